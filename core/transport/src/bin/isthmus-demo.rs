//! `isthmus-demo`: two nodes on loopback exchanging signed messages over the transport
//! chosen by `--transport`. The listener prints who connected, verifies every message's
//! signature and answers with a signed acknowledgement; a node outside its allowlist is
//! refused during the handshake (a `refused handshake` line with the node's key).
//!
//! Keys come from `--key-seed LABEL` (deterministic development keys): never use them
//! for anything of value. The demo never binds or connects outside what the flags say.

// A demo prints what happens on purpose.
#![allow(clippy::print_stdout)]

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use isthmus_core::{Domain, Keypair, NetworkId, NodeId, SignedMessage};
use isthmus_transport::{Connection, Endpoint, TransportConfig, TransportKind};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "Two Isthmus nodes exchanging signed messages")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Log lines as human text or JSON (one object per line, for log shippers); to stderr
    #[arg(long, global = true, default_value = "text")]
    log_format: isthmus_logs::LogFormat,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print the node id of a development key.
    Id {
        #[arg(long)]
        key_seed: String,
    },
    /// Accept connections and acknowledge every signed message.
    Listen {
        #[arg(long, default_value = "quic")]
        transport: TransportKind,
        #[arg(long, default_value = "127.0.0.1:7000")]
        bind: SocketAddr,
        #[arg(long)]
        key_seed: String,
        /// Node ids allowed to connect (repeat the flag); none = anyone may.
        #[arg(long = "allow")]
        allow: Vec<NodeId>,
        #[arg(long, default_value_t = 1)]
        network: u64,
    },
    /// Connect, send signed messages and check the signed acknowledgements.
    Send {
        #[arg(long, default_value = "quic")]
        transport: TransportKind,
        #[arg(long)]
        to: SocketAddr,
        #[arg(long)]
        key_seed: String,
        /// Refuse the listener unless it has this id.
        #[arg(long)]
        expect: Option<NodeId>,
        #[arg(long, default_value_t = 3)]
        count: u32,
        #[arg(long, default_value_t = 1)]
        network: u64,
    },
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Receive one signed message and check it was signed by the authenticated peer.
async fn recv_signed(conn: &mut Connection, network: NetworkId) -> Result<Option<SignedMessage>> {
    let Some(msg) = conn.recv_msg::<SignedMessage>().await else {
        return Ok(None);
    };
    let msg = msg?;
    msg.verify(Domain::AppMessage, network)
        .context("message signature")?;
    if msg.signer != conn.remote_id() {
        bail!(
            "message signed by {} arrived on the connection of {}",
            msg.signer,
            conn.remote_id()
        );
    }
    Ok(Some(msg))
}

async fn serve(mut conn: Connection, key: Keypair, network: NetworkId) -> Result<()> {
    let peer = conn.remote_id();
    while let Some(msg) = recv_signed(&mut conn, network).await? {
        let text = String::from_utf8_lossy(&msg.payload).into_owned();
        say(format!("received from {peer}: \"{text}\" (signature ok)"));
        let ack = SignedMessage::new(
            &key,
            Domain::AppMessage,
            network,
            format!("ack: {text}").into_bytes(),
        );
        conn.send_msg(&ack).await?;
    }
    say(format!(
        "disconnected: {peer} ({})",
        conn.close_reason().unwrap_or_default()
    ));
    Ok(())
}

async fn listen(cfg: TransportConfig, key: Keypair) -> Result<()> {
    let network = cfg.network;
    let policy = match &cfg.allowlist {
        None => "anyone may connect".to_owned(),
        Some(ids) => format!("allowlist of {} node(s)", ids.len()),
    };
    let ep = Endpoint::bind(cfg, key.clone()).await?;
    say(format!(
        "listening on {} as {} over {} ({policy})",
        ep.local_addr(),
        ep.local_id(),
        ep.kind()
    ));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            conn = ep.accept() => {
                let Some(conn) = conn else { break };
                say(format!("connected: {} from {}", conn.remote_id(), conn.remote_addr()));
                let key = key.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(conn, key, network).await {
                        tracing::warn!("connection ended with an error: {e:#}");
                    }
                });
            }
        }
    }
    ep.shutdown().await;
    Ok(())
}

async fn send(
    cfg: TransportConfig,
    key: Keypair,
    to: SocketAddr,
    expect: Option<NodeId>,
    count: u32,
) -> Result<()> {
    let network = cfg.network;
    let ep = Endpoint::bind(cfg, key.clone()).await?;
    let mut conn = ep
        .connect(to, expect)
        .await
        .with_context(|| format!("connecting to {to} failed"))?;
    say(format!(
        "connected to {} at {to} as {}",
        conn.remote_id(),
        key.id()
    ));
    for i in 1..=count {
        let text = format!("hello #{i} from {}", key.id().short());
        conn.send_msg(&SignedMessage::new(
            &key,
            Domain::AppMessage,
            network,
            text.into_bytes(),
        ))
        .await?;
        let ack = tokio::time::timeout(Duration::from_secs(5), recv_signed(&mut conn, network))
            .await
            .context("no acknowledgement within 5 s")??
            .context("listener closed the connection")?;
        say(format!(
            "ack from {}: \"{}\" (signature ok)",
            ack.signer,
            String::from_utf8_lossy(&ack.payload)
        ));
    }
    conn.close("demo finished").await;
    ep.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    isthmus_logs::init(cli.log_format, "warn");
    match cli.cmd {
        Cmd::Id { key_seed } => say(Keypair::dev(&key_seed).id().to_string()),
        Cmd::Listen {
            transport,
            bind,
            key_seed,
            allow,
            network,
        } => {
            let cfg = TransportConfig {
                network: NetworkId(network),
                allowlist: (!allow.is_empty()).then(|| allow.into_iter().collect::<BTreeSet<_>>()),
                ..TransportConfig::new(transport, bind)
            };
            listen(cfg, Keypair::dev(&key_seed)).await?;
        }
        Cmd::Send {
            transport,
            to,
            key_seed,
            expect,
            count,
            network,
        } => {
            let cfg = TransportConfig {
                network: NetworkId(network),
                ..TransportConfig::new(transport, "127.0.0.1:0".parse()?)
            };
            send(cfg, Keypair::dev(&key_seed), to, expect, count).await?;
        }
    }
    Ok(())
}
