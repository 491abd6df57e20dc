//! The hub's native blockchain engine: blocks with Merkle-rooted transactions, signed
//! transfers and module calls, account state with a deterministic root, a bounded mempool,
//! sled storage behind [`store::ChainStore`], proof-of-work and proof-of-stake (Malachite
//! Tendermint) consensus, and the node runtime other crates drive through
//! [`node::NodeHandle`].
//!
//! The pure modules (`merkle`, `tx`, `block`, `state`, `mempool`, `config`) never do I/O.
//! No block counts as committed before its storage batch has been flushed, and nothing
//! received from a peer is trusted before it is verified (signatures, Merkle root, state
//! root, PoW target or commit certificate).

pub mod audit;
pub mod block;
pub mod chain;
pub mod config;
pub mod escrow;
pub mod mempool;
pub mod merkle;
pub mod miner;
pub mod module_error;
pub mod node;
pub mod p2p;
pub mod packets;
pub mod pos;
pub mod rpc;
pub mod state;
pub mod store;
pub mod tx;
pub mod wal;

pub use block::{Block, BlockHeader};
pub use config::NetworkConfig;
pub use merkle::MerkleProof;
pub use module_error::ModuleError;
pub use state::{Account, State};
pub use tx::{Transaction, TxError, TxKind};
