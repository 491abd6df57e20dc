//! The `hub` binary: validates network configs, runs one chain node, starts a local
//! multi-node network as separate processes, and reads node status.
//!
//! It only wires the `isthmus-chain` library to the command line and the process
//! environment; it must never implement chain rules itself.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "hub",
    version,
    about = "Isthmus hub: chain nodes and local networks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Network configuration files
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Check a network config and list every problem
    Check {
        /// Path to the network TOML file
        file: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Config {
            cmd: ConfigCmd::Check { file },
        } => {
            let cfg = isthmus_chain::NetworkConfig::load(&file)
                .with_context(|| format!("config {} is not usable", file.display()))?;
            eprintln!(
                "config {} is valid: network `{}` (id {}), {} node(s)",
                file.display(),
                cfg.name,
                cfg.network_id,
                cfg.nodes
            );
            Ok(())
        }
    }
}
