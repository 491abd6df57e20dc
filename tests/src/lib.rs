//! The shared kit of the end-to-end scenarios in `it/`: the workspace's own binaries, and
//! the real peers' start and stop helpers (from the adapter test kit, which every adapter
//! suite uses too). The scenarios themselves live in `it/` (one test binary); the hub is
//! assembled through `isthmus_hub::builder`, and the peers' fixtures (litecoind, anvil,
//! native test networks) are the adapters' own, shared by path or feature, so every suite
//! starts and stops them the same way.
//!
//! This crate holds no product code, and nothing in it talks to anything outside
//! 127.0.0.0/8.

pub use isthmus_adapter_testkit::peers::{
    free_port, peers_dir, repo_root, tool, workspace_bin, Reaped,
};
