//! Provisioned networks: a [`spec::NetworkSpec`] becomes a network config, node keys and a
//! set of node processes the [`supervisor::Supervisor`] keeps running; [`network`] keeps
//! the durable record of each and links it to the hub over the nodes' RPC.

pub mod network;
pub mod spec;
pub mod supervisor;
