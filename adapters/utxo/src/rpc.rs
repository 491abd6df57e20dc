//! The node's JSON-RPC, through `bitcoincore-rpc`'s blocking client on tokio's blocking pool,
//! with its errors sorted into retryable transport trouble and final rejections.

use bitcoincore_rpc::{jsonrpc, Auth, Client, RpcApi};
use isthmus_adapter_api::AdapterError;
use isthmus_core::NetworkId;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;

/// A node error, kept apart from transport trouble so callers can read the RPC code.
#[derive(Debug, Clone)]
pub enum RpcFailure {
    /// The node answered with an error.
    Node { code: i32, message: String },
    /// No usable answer: connection refused, timeout, garbage.
    Transport(String),
}

impl RpcFailure {
    pub fn into_adapter(self, network: NetworkId, op: &str) -> AdapterError {
        match self {
            RpcFailure::Transport(reason) => AdapterError::Unavailable {
                network,
                reason: format!("{op}: {reason}"),
            },
            // -28: warming up; -9/-10: not connected / downloading.
            RpcFailure::Node {
                code: -28 | -9 | -10,
                message,
            } => AdapterError::Unavailable {
                network,
                reason: format!("{op}: {message}"),
            },
            RpcFailure::Node { code, message } => AdapterError::Rejected {
                network,
                reason: format!("{op}: {message} (rpc code {code})"),
            },
        }
    }
}

#[derive(Clone)]
pub struct Rpc {
    client: Arc<Client>,
    pub network: NetworkId,
}

impl Rpc {
    pub fn new(
        url: &str,
        user: &str,
        password: &str,
        network: NetworkId,
    ) -> Result<Self, AdapterError> {
        let client = Client::new(url, Auth::UserPass(user.to_owned(), password.to_owned()))
            .map_err(|e| AdapterError::InvalidRequest {
                reason: format!("rpc url `{url}`: {e}"),
            })?;
        Ok(Rpc {
            client: Arc::new(client),
            network,
        })
    }

    /// One call, keeping the node's error code.
    pub async fn try_call<T: DeserializeOwned + Send + 'static>(
        &self,
        method: &'static str,
        args: Vec<Value>,
    ) -> Result<T, RpcFailure> {
        let client = self.client.clone();
        let joined = tokio::task::spawn_blocking(move || client.call::<T>(method, &args)).await;
        match joined {
            Err(e) => Err(RpcFailure::Transport(format!("rpc task failed: {e}"))),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(bitcoincore_rpc::Error::JsonRpc(jsonrpc::Error::Rpc(e)))) => {
                Err(RpcFailure::Node {
                    code: e.code,
                    message: e.message,
                })
            }
            Ok(Err(e)) => Err(RpcFailure::Transport(e.to_string())),
        }
    }

    /// One call; node errors become rejections, transport errors `Unavailable`.
    pub async fn call<T: DeserializeOwned + Send + 'static>(
        &self,
        method: &'static str,
        args: Vec<Value>,
    ) -> Result<T, AdapterError> {
        self.try_call(method, args)
            .await
            .map_err(|f| f.into_adapter(self.network, method))
    }
}
