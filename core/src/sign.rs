//! Domain-separated ed25519 signatures with strict verification.
//!
//! Every signature covers `(domain tag, network id, payload)`, so a signature made for one
//! message type or network can never be replayed as another. The signed bytes are
//!
//! ```text
//! "isthmus-sig/v1" 0x00 | tag length (u8) | tag | network id (u64 big-endian) | payload
//! ```
//!
//! Verification uses `verify_strict` semantics and additionally rejects weak (small-order)
//! public keys. Batch verification rejects weak keys *before* batching and, when the batch
//! fails, falls back to single verification so the result always equals the single result.

use crate::identity::{Keypair, NodeId};
use ed25519_dalek::{Signer, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;

const SIG_PREFIX: &[u8] = b"isthmus-sig/v1\x00";

/// Identifies a network (chain). Numeric so that EVM chain ids fit.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct NetworkId(pub u64);

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a signature is for. Closed set: adding a domain is a protocol change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Domain {
    /// Binds a transport static key (Noise, QUIC certificate, UDP session) to a node identity.
    TransportBinding,
    /// A chain transaction.
    Transaction,
    /// A block header, signed by its proposer.
    BlockHeader,
    /// A consensus vote.
    ConsensusVote,
    /// A cross-network packet or receipt.
    Packet,
    /// An attestation by the hub that a lock was validated on both sides.
    Attestation,
    /// An application message carried by the transport demo and tools.
    AppMessage,
    /// A message from an out-of-process adapter.
    AdapterMessage,
}

impl Domain {
    pub fn tag(self) -> &'static str {
        match self {
            Domain::TransportBinding => "transport-binding",
            Domain::Transaction => "transaction",
            Domain::BlockHeader => "block-header",
            Domain::ConsensusVote => "consensus-vote",
            Domain::Packet => "packet",
            Domain::Attestation => "attestation",
            Domain::AppMessage => "app-message",
            Domain::AdapterMessage => "adapter-message",
        }
    }
}

/// Build the exact bytes that get signed.
pub fn signing_bytes(domain: Domain, network: NetworkId, payload: &[u8]) -> Vec<u8> {
    let tag = domain.tag().as_bytes();
    let mut out = Vec::with_capacity(SIG_PREFIX.len() + 1 + tag.len() + 8 + payload.len());
    out.extend_from_slice(SIG_PREFIX);
    // Tags are short constants; the length byte keeps tag/network boundaries unambiguous.
    out.push(tag.len() as u8);
    out.extend_from_slice(tag);
    out.extend_from_slice(&network.0.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A 64-byte ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature(#[serde(with = "serde_bytes")] pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", hex::encode(&self.0[..8]))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("public key {0} is not a valid ed25519 point")]
    InvalidKey(NodeId),
    #[error("public key {0} is weak (small order) and is refused")]
    WeakKey(NodeId),
    #[error("signature by {0} does not verify for domain `{1}` on network {2}")]
    BadSignature(NodeId, &'static str, NetworkId),
}

impl Keypair {
    /// Sign `payload` for `domain` on `network`.
    pub fn sign(&self, domain: Domain, network: NetworkId, payload: &[u8]) -> Signature {
        let msg = signing_bytes(domain, network, payload);
        Signature(self.signing_key().sign(&msg).to_bytes())
    }
}

fn strict_key(id: &NodeId) -> Result<VerifyingKey, SignError> {
    let key = id.verifying_key().map_err(|_| SignError::InvalidKey(*id))?;
    if key.is_weak() {
        return Err(SignError::WeakKey(*id));
    }
    Ok(key)
}

/// Verify one signature strictly.
pub fn verify(
    signer: &NodeId,
    domain: Domain,
    network: NetworkId,
    payload: &[u8],
    sig: &Signature,
) -> Result<(), SignError> {
    let key = strict_key(signer)?;
    let msg = signing_bytes(domain, network, payload);
    let s = ed25519_dalek::Signature::from_bytes(&sig.0);
    key.verify_strict(&msg, &s)
        .map_err(|_| SignError::BadSignature(*signer, domain.tag(), network))
}

/// One item of a batch verification.
#[derive(Debug, Clone)]
pub struct BatchItem<'a> {
    pub signer: NodeId,
    pub domain: Domain,
    pub network: NetworkId,
    pub payload: &'a [u8],
    pub signature: Signature,
}

/// Verify many signatures. Returns one result per item, identical to what [`verify`] would
/// return for each. Fast path: one ed25519 batch over the items whose keys are strong.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Vec<Result<(), SignError>> {
    let mut results: Vec<Result<(), SignError>> = Vec::with_capacity(items.len());
    let mut keys = Vec::with_capacity(items.len());
    let mut msgs = Vec::with_capacity(items.len());
    let mut sigs = Vec::with_capacity(items.len());
    let mut idx = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        match strict_key(&it.signer) {
            Ok(k) => {
                keys.push(k);
                msgs.push(signing_bytes(it.domain, it.network, it.payload));
                sigs.push(ed25519_dalek::Signature::from_bytes(&it.signature.0));
                idx.push(i);
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    if idx.is_empty() {
        return results;
    }
    let msg_refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    let batch_ok = ed25519_dalek::verify_batch(&msg_refs, &sigs, &keys).is_ok();
    // The batch equation is not identical to the strict single check on crafted inputs, so
    // a passing batch is only trusted if every signature is also canonical; we re-check
    // singly whenever the batch fails, and accept the batch result otherwise only for
    // signatures whose R and s passed the strict decode below.
    for (j, &i) in idx.iter().enumerate() {
        if !batch_ok || !sig_is_canonical(&sigs[j]) {
            let it = &items[i];
            results[i] = keys[j]
                .verify_strict(&msgs[j], &sigs[j])
                .map_err(|_| SignError::BadSignature(it.signer, it.domain.tag(), it.network));
        }
    }
    results
}

/// `verify_strict` additionally refuses small-order `R` components; the batch equation does
/// not. Checking R here keeps the fast path equal to the strict one.
fn sig_is_canonical(sig: &ed25519_dalek::Signature) -> bool {
    let r = sig.r_bytes();
    // A small-order R decodes to a point whose 8-multiple is the identity; the cheapest
    // exact way to test it is through a throw-away VerifyingKey built from R.
    match VerifyingKey::from_bytes(r) {
        Ok(p) => !p.is_weak(),
        Err(_) => false,
    }
}

/// A payload with its signer and signature, checked against a domain and network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMessage {
    pub signer: NodeId,
    pub network: NetworkId,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub signature: Signature,
}

impl SignedMessage {
    pub fn new(key: &Keypair, domain: Domain, network: NetworkId, payload: Vec<u8>) -> Self {
        let signature = key.sign(domain, network, &payload);
        SignedMessage {
            signer: key.id(),
            network,
            payload,
            signature,
        }
    }

    /// Verify for the expected domain *and* network; a message for another network fails.
    pub fn verify(&self, domain: Domain, expected_network: NetworkId) -> Result<(), SignError> {
        if self.network != expected_network {
            return Err(SignError::BadSignature(
                self.signer,
                domain.tag(),
                expected_network,
            ));
        }
        verify(
            &self.signer,
            domain,
            self.network,
            &self.payload,
            &self.signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: NetworkId = NetworkId(7);

    #[test]
    fn sign_verify_and_domain_separation() {
        let k = Keypair::dev("alice");
        let sig = k.sign(Domain::Transaction, NET, b"pay 5");
        assert!(verify(&k.id(), Domain::Transaction, NET, b"pay 5", &sig).is_ok());
        // other domain, other network, other payload: all refused
        assert!(verify(&k.id(), Domain::Packet, NET, b"pay 5", &sig).is_err());
        assert!(verify(&k.id(), Domain::Transaction, NetworkId(8), b"pay 5", &sig).is_err());
        assert!(verify(&k.id(), Domain::Transaction, NET, b"pay 6", &sig).is_err());
    }

    #[test]
    fn weak_key_is_refused() {
        // The identity point (0,1) encodes as 0x01 followed by zeros: small order.
        let mut b = [0u8; 32];
        b[0] = 1;
        let weak = NodeId(b);
        let sig = Signature([0u8; 64]);
        assert_eq!(
            verify(&weak, Domain::Transaction, NET, b"", &sig),
            Err(SignError::WeakKey(weak))
        );
    }

    #[test]
    fn batch_equals_single() {
        let keys: Vec<_> = (0..16).map(|i| Keypair::dev(&format!("k{i}"))).collect();
        let payloads: Vec<Vec<u8>> = (0..16).map(|i| vec![i as u8; 40]).collect();
        let mut items: Vec<BatchItem<'_>> = keys
            .iter()
            .zip(&payloads)
            .map(|(k, p)| BatchItem {
                signer: k.id(),
                domain: Domain::Packet,
                network: NET,
                payload: p,
                signature: k.sign(Domain::Packet, NET, p),
            })
            .collect();
        assert!(verify_batch(&items).iter().all(|r| r.is_ok()));
        items[3].signature.0[5] ^= 1;
        let mut weak = [0u8; 32];
        weak[0] = 1;
        items[9].signer = NodeId(weak);
        let res = verify_batch(&items);
        for (i, r) in res.iter().enumerate() {
            let single = verify(
                &items[i].signer,
                items[i].domain,
                items[i].network,
                items[i].payload,
                &items[i].signature,
            );
            assert_eq!(r, &single, "item {i}");
        }
        assert!(res[3].is_err() && res[9].is_err());
        assert_eq!(res.iter().filter(|r| r.is_err()).count(), 2);
    }

    #[test]
    fn signed_message_checks_network() {
        let k = Keypair::dev("n");
        let m = SignedMessage::new(&k, Domain::AppMessage, NET, b"hi".to_vec());
        assert!(m.verify(Domain::AppMessage, NET).is_ok());
        assert!(m.verify(Domain::AppMessage, NetworkId(1)).is_err());
        let mut t = m.clone();
        t.payload[0] ^= 1;
        assert!(t.verify(Domain::AppMessage, NET).is_err());
    }
}
