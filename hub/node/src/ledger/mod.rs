//! [`ChainLedger`]: the hub records its two-phase decisions as transactions on its own
//! native chain (the `decisions` module), so they are replicated, auditable and final before
//! any escrow is shown an attestation that points at them. [`ChainTransitionLog`] anchors
//! the interop core's transitions there too.

mod anchor;

pub use anchor::ChainTransitionLog;

use async_trait::async_trait;
use isthmus_adapter_api::port::PortError;
use isthmus_chain::escrow::{
    decision_state_key, record_decision_kind, AttestedDecision, DecisionRecord,
};
use isthmus_chain::rpc::NodeApi;
use isthmus_chain::tx::TxKind;
use isthmus_core::Keypair;
use isthmus_interop::executor::HubLedger;
use isthmus_interop::ExecError;
use isthmus_lock_contracts::{Decision, HubRecord, InstanceId, TxId};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Records decisions on the hub chain through one of its nodes (in this process or over
/// its RPC), signed by the hub's recording key (records are scoped by that key).
pub struct ChainLedger {
    node: Arc<dyn NodeApi>,
    signer: Keypair,
    commit_timeout: Duration,
    submitting: tokio::sync::Mutex<()>,
}

fn decision(d: Decision) -> AttestedDecision {
    match d {
        Decision::Validated => AttestedDecision::Validated,
        Decision::Aborted => AttestedDecision::Aborted,
    }
}

impl ChainLedger {
    /// A ledger on the hub chain served by `node`, recording with `signer` (it needs no
    /// balance). A decision not committed within 30 s is a retryable error.
    pub fn new(node: impl NodeApi, signer: Keypair) -> ChainLedger {
        ChainLedger {
            node: Arc::new(node),
            signer,
            commit_timeout: Duration::from_secs(30),
            submitting: tokio::sync::Mutex::new(()),
        }
    }

    pub fn with_commit_timeout(mut self, t: Duration) -> ChainLedger {
        self.commit_timeout = t;
        self
    }

    async fn read(&self, key: &[u8]) -> Result<Option<DecisionRecord>, ExecError> {
        let raw = self
            .node
            .state_get(key.to_vec())
            .await
            .map_err(|e| ExecError::Retryable(format!("hub chain: {e}")))?;
        raw.map(|b| {
            rmp_serde::from_slice(&b)
                .map_err(|e| ExecError::Refused(format!("corrupt decision record: {e}")))
        })
        .transpose()
    }

    /// The record if `rec` holds `want`, a refusal if it holds the other decision.
    fn settle(
        instance: InstanceId,
        rec: DecisionRecord,
        want: AttestedDecision,
    ) -> Result<HubRecord, ExecError> {
        if rec.decision != want {
            return Err(ExecError::Refused(format!(
                "instance {instance} is already recorded as {:?}",
                rec.decision
            )));
        }
        Ok(HubRecord {
            height: rec.height,
            tx: TxId(rec.tx.to_hex()),
        })
    }

    async fn submit(
        &self,
        instance: InstanceId,
        want: AttestedDecision,
    ) -> Result<isthmus_core::Hash32, ExecError> {
        submit_kind(
            self.node.as_ref(),
            &self.signer,
            record_decision_kind(instance.0, want),
        )
        .await
    }
}

/// Submit one hub-chain transaction of `kind` signed by `signer` (the native adapter's
/// submission, nonce resyncs included).
pub(crate) async fn submit_kind(
    node: &dyn NodeApi,
    signer: &Keypair,
    kind: TxKind,
) -> Result<isthmus_core::Hash32, ExecError> {
    isthmus_adapter_native::submit_kind(node, signer, kind)
        .await
        .map_err(|e| match e {
            PortError::Retryable(m) => ExecError::Retryable(m),
            PortError::Refused(m) => ExecError::Refused(m),
        })
}

#[async_trait]
impl HubLedger for ChainLedger {
    async fn record_decision(
        &self,
        instance: InstanceId,
        d: Decision,
    ) -> Result<HubRecord, ExecError> {
        let want = decision(d);
        let key = decision_state_key(&self.signer.id(), &instance.0);
        let _one = self.submitting.lock().await;
        if let Some(rec) = self.read(&key).await? {
            return Self::settle(instance, rec, want);
        }
        let id = self.submit(instance, want).await?;
        let deadline = Instant::now() + self.commit_timeout;
        loop {
            if let Some(rec) = self.read(&key).await? {
                return Self::settle(instance, rec, want);
            }
            let included = self
                .node
                .tx_proof(id)
                .await
                .map_err(|e| ExecError::Retryable(format!("hub chain: {e}")))?
                .is_some();
            if included {
                // Included, yet no record: re-read once (the state may have moved on with
                // the block), then the call failed.
                return match self.read(&key).await? {
                    Some(rec) => Self::settle(instance, rec, want),
                    None => Err(ExecError::Refused(format!(
                        "decision transaction {} for {instance} failed",
                        id.to_hex()
                    ))),
                };
            }
            if Instant::now() > deadline {
                return Err(ExecError::Retryable(format!(
                    "decision for {instance} not committed within {:?}",
                    self.commit_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
