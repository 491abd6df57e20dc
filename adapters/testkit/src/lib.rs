//! The test kit for platform adapters: an in-memory [`mock`] platform (`MockAdapter`, and
//! `MockFixture` to drive it) and the adapter [`conformance`] suite, written once and run
//! against every adapter (the mock, the native chain, anvil, litecoind and out-of-process
//! adapters). An adapter crate implements [`conformance::Fixture`] for its platform and calls
//! [`conformance::run`] from its tests.
//!
//! It must never be on a code path of a shipping binary that serves a real network: the mock
//! is a chain held in memory, its fixture signs with well-known dev keys and mints funds on
//! demand. Crates name it as a dev-dependency, or behind a feature only tests enable
//! (`isthmus-adapter-evm`'s `conformance`, for its anvil fixture). The one exception is the
//! `adapter-host` binary of `isthmus-adapter-remote`: with `--mock` it serves the mock
//! platform (with `--control`, the fixture's test-control calls too) out of process, so the
//! conformance suite, the hub's adapter-registry tests and the README's registration demo can
//! reach an out-of-process adapter without a foreign node. Its `--litecoind` mode, the one a
//! provider runs, uses nothing from here. Cargo has no binary-only dependencies, so this crate
//! is a normal dependency of `isthmus-adapter-remote` and is linked into what depends on it
//! (the hub node), which never calls it.
//!
//! The mock implements only the public `isthmus-adapter-api`; nothing here widens what the
//! adapter API promises.

pub mod conformance;
pub mod mock;
pub mod peers;
