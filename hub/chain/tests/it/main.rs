//! Integration tests of isthmus-chain: config fixtures and multi-node networks.

mod configs;
