//! Executes contract actions on the networks through their adapters, and records
//! decisions on the hub chain through a [`HubLedger`].

use crate::contract::{Contract, ContractEvent};
use crate::diagnosis::Failure;
use crate::driver::{ActionExecutor, ExecError};
use async_trait::async_trait;
use isthmus_adapter_api::{EvmEscrowDomain, HubAttestation, LegOp, LockTerms};
use isthmus_core::{Keypair, NetworkId};
use isthmus_lock_contracts::{
    Action, Decision, HubRecord, InstanceId, LegSpec, LockId, TwoPhaseEvent,
};
use std::collections::HashMap;
use std::sync::Arc;

/// Where the hub records its decisions: a transaction on the hub chain. The returned
/// record's commit evidence is what escrows are shown.
#[async_trait]
pub trait HubLedger: Send + Sync + 'static {
    /// Record `decision` for `instance` and return where it was committed. Idempotent: the
    /// same instance and decision return the same record.
    async fn record_decision(
        &self,
        instance: InstanceId,
        decision: Decision,
    ) -> Result<HubRecord, ExecError>;
}

/// The adapters of the networks the hub links, by network id: a plain map, or an
/// [`crate::AdapterRegistry`] when providers may register adapters at run time.
pub type AdapterSet = Arc<dyn crate::registry::AdapterLookup>;

pub struct AdapterExecutor {
    pub adapters: AdapterSet,
    pub ledger: Arc<dyn HubLedger>,
    /// The hub's attestation keys (escrows trust a threshold of them).
    pub attesters: Arc<Vec<Keypair>>,
    /// The hub's secp256k1 attestation keys, for escrows that check signatures with
    /// `ecrecover` (EVM networks). Empty unless [`AdapterExecutor::with_evm_attesters`].
    pub evm_attesters: Arc<Vec<k256::ecdsa::SigningKey>>,
    /// Where each EVM network's escrow checks attestations; attestations for these networks
    /// carry secp256k1 signatures besides the ed25519 ones.
    pub evm_escrows: Arc<HashMap<NetworkId, EvmEscrowDomain>>,
}

impl AdapterExecutor {
    /// An executor whose attestations carry ed25519 signatures by `attesters` only.
    pub fn new(
        adapters: AdapterSet,
        ledger: Arc<dyn HubLedger>,
        attesters: Vec<Keypair>,
    ) -> AdapterExecutor {
        AdapterExecutor {
            adapters,
            ledger,
            attesters: Arc::new(attesters),
            evm_attesters: Arc::new(Vec::new()),
            evm_escrows: Arc::new(HashMap::new()),
        }
    }

    /// Also sign with these secp256k1 keys for the EVM escrows named by
    /// [`AdapterExecutor::with_evm_escrow`].
    pub fn with_evm_attesters(mut self, keys: Vec<k256::ecdsa::SigningKey>) -> AdapterExecutor {
        self.evm_attesters = Arc::new(keys);
        self
    }

    /// `network`'s escrow is an EVM contract at `domain`: its attestations get secp256k1
    /// signatures over `domain`'s digest.
    pub fn with_evm_escrow(
        mut self,
        network: NetworkId,
        domain: EvmEscrowDomain,
    ) -> AdapterExecutor {
        Arc::make_mut(&mut self.evm_escrows).insert(network, domain);
        self
    }

    /// The attestation for `decision` on `lock` of `network`: ed25519 signatures by the
    /// hub's attesters, plus secp256k1 ones when `network`'s escrow is an EVM contract.
    fn attest(
        &self,
        network: NetworkId,
        lock: LockId,
        decision: Decision,
        record: HubRecord,
    ) -> HubAttestation {
        let mut att =
            HubAttestation::sign_ed25519(network, lock, decision, record.clone(), &self.attesters);
        if let Some(domain) = self.evm_escrows.get(&network) {
            let evm = HubAttestation::sign_secp256k1_evm(
                network,
                lock,
                decision,
                record,
                domain,
                &self.evm_attesters,
            );
            att.signatures.extend(evm.signatures);
        }
        att
    }

    fn leg_of<'a>(contract: &'a Contract, action: &Action) -> Option<(&'a LegSpec, LockTerms)> {
        let leg = action.leg()?;
        Some(match contract {
            Contract::TwoPhase(m) => (m.spec.leg(leg), LockTerms::TwoPhase),
            Contract::Htlc(m) => (
                m.spec.leg(leg),
                LockTerms::Htlc {
                    hashlock: m.spec.hashlock,
                },
            ),
        })
    }
}

#[async_trait]
impl ActionExecutor for AdapterExecutor {
    async fn execute(
        &self,
        contract: &Contract,
        action: &Action,
    ) -> Result<Vec<ContractEvent>, ExecError> {
        self.execute_diagnosed(contract, action)
            .await
            .map_err(ExecError::from)
    }

    async fn execute_diagnosed(
        &self,
        contract: &Contract,
        action: &Action,
    ) -> Result<Vec<ContractEvent>, Failure> {
        if let Action::RecordDecision { decision } = action {
            let Contract::TwoPhase(_) = contract else {
                return Err(
                    ExecError::Refused("only two-phase locks record decisions".into()).into(),
                );
            };
            let record = self
                .ledger
                .record_decision(contract.id(), *decision)
                .await?;
            return Ok(vec![ContractEvent::TwoPhase(
                TwoPhaseEvent::DecisionRecorded {
                    decision: *decision,
                    record,
                },
            )]);
        }
        let Some((spec, terms)) = Self::leg_of(contract, action) else {
            return Err(ExecError::Refused(format!("action {action:?} names no leg")).into());
        };
        let adapter = self
            .adapters
            .adapter(&spec.network)
            .ok_or_else(|| Failure {
                network: Some(spec.network),
                ..ExecError::Retryable(format!(
                    "no adapter is registered for network {}",
                    spec.network
                ))
                .into()
            })?;
        let attest =
            |net: NetworkId, lock: LockId, d: Decision, r: HubRecord| self.attest(net, lock, d, r);
        let Some(op) = LegOp::from_action(action, spec, &terms, &attest) else {
            return Err(
                ExecError::Refused(format!("action {action:?} is not an adapter call")).into(),
            );
        };
        let tx = op
            .execute(adapter.as_ref())
            .await
            .map_err(|e| Failure::adapter(spec.network, &e))?;
        tracing::info!(instance = %contract.id(), network = %spec.network, tx = %tx.0, ?action, "action submitted");
        // The consequence (lock seen, release final, ...) arrives through the watcher.
        Ok(vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_adapter_api::Adapter;
    use isthmus_lock_contracts::TxId;

    struct NoLedger;

    #[async_trait]
    impl HubLedger for NoLedger {
        async fn record_decision(
            &self,
            instance: InstanceId,
            _: Decision,
        ) -> Result<HubRecord, ExecError> {
            Err(ExecError::Refused(format!("no ledger for {instance}")))
        }
    }

    fn executor() -> (AdapterExecutor, Vec<[u8; 20]>, EvmEscrowDomain) {
        let adapters: HashMap<NetworkId, Arc<dyn Adapter>> = HashMap::new();
        let evm_keys: Vec<k256::ecdsa::SigningKey> = (1u8..=2)
            .map(|i| k256::ecdsa::SigningKey::from_slice(&[i; 32]).unwrap())
            .collect();
        let addrs = evm_keys
            .iter()
            .map(|k| EvmEscrowDomain::address_of(k.verifying_key()))
            .collect();
        let domain = EvmEscrowDomain {
            chain_id: 31337,
            escrow: [7; 20],
        };
        let exec = AdapterExecutor::new(
            Arc::new(adapters),
            Arc::new(NoLedger),
            vec![Keypair::dev("attester-0")],
        )
        .with_evm_attesters(evm_keys)
        .with_evm_escrow(NetworkId(31337), domain);
        (exec, addrs, domain)
    }

    fn record() -> HubRecord {
        HubRecord {
            height: 4,
            tx: TxId("hub-tx".into()),
        }
    }

    #[test]
    fn attestations_for_an_evm_escrow_carry_both_schemes() {
        let (exec, addrs, domain) = executor();
        let lock = LockId::derive(
            InstanceId::derive(&[b"evm"]),
            isthmus_lock_contracts::LegId::A,
        );
        let att = exec.attest(NetworkId(31337), lock, Decision::Validated, record());
        assert_eq!(att.secp256k1_evm_signers(&domain, &addrs).len(), 2);
        assert_eq!(att.ed25519_signers(&[Keypair::dev("attester-0").id()]), 1);
        // Bound to the escrow: another contract's domain recovers no trusted signer.
        let other = EvmEscrowDomain {
            escrow: [8; 20],
            ..domain
        };
        assert!(att.secp256k1_evm_signers(&other, &addrs).is_empty());
    }

    #[test]
    fn attestations_for_other_networks_carry_ed25519_only() {
        let (exec, addrs, domain) = executor();
        let lock = LockId::derive(
            InstanceId::derive(&[b"native"]),
            isthmus_lock_contracts::LegId::B,
        );
        let att = exec.attest(NetworkId(201), lock, Decision::Aborted, record());
        assert_eq!(att.signatures.len(), 1);
        assert_eq!(att.ed25519_signers(&[Keypair::dev("attester-0").id()]), 1);
        assert!(att.secp256k1_evm_signers(&domain, &addrs).is_empty());
        // Without the builder, no network gets secp256k1 signatures.
        let plain = AdapterExecutor::new(
            exec.adapters.clone(),
            exec.ledger.clone(),
            vec![Keypair::dev("attester-0")],
        );
        let att = plain.attest(NetworkId(31337), lock, Decision::Validated, record());
        assert_eq!(att.signatures.len(), 1);
    }
}
