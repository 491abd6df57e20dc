//! Placeholder, replaced by the transport implementation.
