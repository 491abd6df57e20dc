//! [`ChainTransitionLog`]: the interop core's transition anchors, written to the hub
//! chain's `audit` module (see `isthmus_chain::audit`) and confirmed by reading the chain's
//! state back, never by the node's word that a transaction was accepted.

use super::submit_kind;
use async_trait::async_trait;
use isthmus_chain::audit::{anchor_args, anchor_key, Anchor, MODULE};
use isthmus_chain::rpc::NodeApi;
use isthmus_chain::state::module_key;
use isthmus_chain::tx::TxKind;
use isthmus_core::Keypair;
use isthmus_interop::{AnchorError, ExecError, TransitionAnchor, TransitionLog};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Anchors transitions on the hub chain through one of its nodes, signed by the hub's
/// auditing key (anchors are scoped by that key; it needs no balance). Use a key of its
/// own, not the decision ledger's, so the two never race for nonces.
pub struct ChainTransitionLog {
    node: Arc<dyn NodeApi>,
    signer: Keypair,
    commit_timeout: Duration,
    submitting: tokio::sync::Mutex<()>,
}

impl ChainTransitionLog {
    pub fn new(node: impl NodeApi, signer: Keypair) -> ChainTransitionLog {
        ChainTransitionLog {
            node: Arc::new(node),
            signer,
            commit_timeout: Duration::from_secs(30),
            submitting: tokio::sync::Mutex::new(()),
        }
    }

    /// The digest the chain holds for `(instance, seq)` under this log's key.
    pub async fn anchored(
        &self,
        instance: &isthmus_lock_contracts::InstanceId,
        seq: u64,
    ) -> Result<Option<[u8; 32]>, AnchorError> {
        let key = module_key(
            MODULE,
            &anchor_key(&self.signer.id().0, &instance.0 .0, seq),
        );
        let raw = self
            .node
            .state_get(key)
            .await
            .map_err(|e| AnchorError::Unavailable(format!("hub chain: {e}")))?;
        Ok(raw.and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok()))
    }
}

fn exec(e: ExecError) -> AnchorError {
    match e {
        ExecError::Retryable(m) => AnchorError::Unavailable(m),
        ExecError::Refused(m) => AnchorError::Refused(m),
    }
}

#[async_trait]
impl TransitionLog for ChainTransitionLog {
    async fn anchor(&self, anchors: &[TransitionAnchor]) -> Result<(), AnchorError> {
        let Some(last) = anchors.last() else {
            return Ok(());
        };
        let _one = self.submitting.lock().await;
        if self.anchored(&last.instance, last.seq).await? == Some(last.digest.0) {
            return Ok(());
        }
        let batch: Vec<Anchor> = anchors
            .iter()
            .map(|a| Anchor {
                instance: a.instance.0 .0,
                seq: a.seq,
                digest: a.digest.0,
            })
            .collect();
        let kind = TxKind::ModuleCall {
            module: MODULE.to_owned(),
            method: "anchor".to_owned(),
            args: anchor_args(&batch),
        };
        let id = submit_kind(self.node.as_ref(), &self.signer, kind)
            .await
            .map_err(exec)?;
        let deadline = Instant::now() + self.commit_timeout;
        loop {
            // The call is atomic: the last anchor present means the whole batch is.
            match self.anchored(&last.instance, last.seq).await? {
                Some(d) if d == last.digest.0 => return Ok(()),
                Some(_) => {
                    return Err(AnchorError::Refused(format!(
                        "instance {} seq {} is anchored with another digest",
                        last.instance, last.seq
                    )))
                }
                None => {}
            }
            let included = self
                .node
                .tx_proof(id)
                .await
                .map_err(|e| AnchorError::Unavailable(format!("hub chain: {e}")))?
                .is_some();
            if included {
                return match self.anchored(&last.instance, last.seq).await? {
                    Some(d) if d == last.digest.0 => Ok(()),
                    _ => Err(AnchorError::Refused(format!(
                        "anchor transaction {} failed on the hub chain",
                        id.to_hex()
                    ))),
                };
            }
            if Instant::now() > deadline {
                return Err(AnchorError::Unavailable(format!(
                    "anchors not committed within {:?}",
                    self.commit_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
