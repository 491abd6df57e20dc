//! Submitting one transaction signed by a key the hub holds (its submitter, recorder or
//! auditor key) to a node, with the nonce read from the chain.

use isthmus_adapter_api::port::PortError;
use isthmus_chain::rpc::NodeApi;
use isthmus_chain::tx::{Transaction, TxError, TxKind};
use isthmus_core::Keypair;

/// Bounded nonce resyncs per submission.
const NONCE_RETRIES: usize = 4;

/// Submit one transaction of `kind` signed by `signer`, resyncing the nonce from the node
/// when the account has transactions in flight. A duplicate counts as submitted.
pub async fn submit_kind(
    node: &dyn NodeApi,
    signer: &Keypair,
    kind: TxKind,
) -> Result<isthmus_core::Hash32, PortError> {
    let network = node.config().network();
    let mut nonce = node
        .account(signer.id())
        .await
        .map_err(|e| PortError::Retryable(format!("hub chain: {e}")))?
        .nonce;
    for _ in 0..NONCE_RETRIES {
        let tx = Transaction::sign(signer, network, nonce, kind.clone());
        let result = node
            .submit(vec![tx])
            .await
            .map_err(|e| PortError::Retryable(format!("hub chain: {e}")))?
            .pop();
        match result {
            Some(Ok(id)) | Some(Err(TxError::Duplicate(id))) => return Ok(id),
            Some(Err(TxError::BadNonce { expected, .. })) => nonce = expected,
            Some(Err(e @ TxError::MempoolFull(_))) => {
                return Err(PortError::Retryable(e.to_string()))
            }
            Some(Err(e)) => return Err(PortError::Refused(e.to_string())),
            None => return Err(PortError::Retryable("hub chain answered nothing".into())),
        }
    }
    Err(PortError::Retryable(
        "the signing key's nonce kept moving".into(),
    ))
}
