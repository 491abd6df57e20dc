//! Signing the inputs the hub spends: P2WPKH coins and the two paths of each lock script.
//! Pure: the adapter picks coins and fees, this module only assembles and signs.

use bitcoin::ecdsa;
use bitcoin::secp256k1::{All, Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    absolute, transaction, Amount, OutPoint, PublicKey, ScriptBuf, Sequence, Transaction, TxIn,
    TxOut, Witness,
};

/// A key the wallet handed out for one signing operation.
#[derive(Clone)]
pub struct Key {
    pub secret: SecretKey,
    pub public: PublicKey,
}

impl Key {
    pub fn from_secret(secp: &Secp256k1<All>, bytes: &[u8; 32]) -> Option<Key> {
        let secret = SecretKey::from_slice(bytes).ok()?;
        Some(Key {
            public: PublicKey::new(secret.public_key(secp)),
            secret,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Coin {
    pub outpoint: OutPoint,
    pub value: u64,
    pub script: ScriptBuf,
}

/// How an input is unlocked.
#[derive(Clone)]
pub enum Unlock {
    P2wpkh(Key),
    HtlcClaim {
        key: Key,
        preimage: [u8; 32],
        script: ScriptBuf,
    },
    HtlcRefund {
        key: Key,
        script: ScriptBuf,
    },
    /// The 2-of-2 path. The owner signs SINGLE|ANYONECANPAY: its signature commits to the
    /// escrow input and the payee output at the same index only, so it can be agreed in
    /// advance while the hub adds fee inputs; the hub signs ALL.
    EscrowCosigned {
        hub: Key,
        owner: Key,
        script: ScriptBuf,
    },
    EscrowRefund {
        owner: Key,
        script: ScriptBuf,
    },
}

pub struct Input {
    pub coin: Coin,
    pub unlock: Unlock,
}

fn sig(
    secp: &Secp256k1<All>,
    cache: &mut SighashCache<&Transaction>,
    i: usize,
    script: &ScriptBuf,
    value: u64,
    key: &Key,
    ty: EcdsaSighashType,
) -> Result<Vec<u8>, String> {
    let hash = cache
        .p2wsh_signature_hash(i, script, Amount::from_sat(value), ty)
        .map_err(|e| format!("sighash of input {i}: {e}"))?;
    let msg = Message::from(hash);
    Ok(ecdsa::Signature {
        signature: secp.sign_ecdsa(&msg, &key.secret),
        sighash_type: ty,
    }
    .to_vec())
}

/// Assemble and sign. Every input has sequence 0xfffffffe, so `lock_time` is enforced.
/// Litecoin Core does not relay replacements (BIP-125), so a stuck spend is bumped by a
/// child paying for it (CPFP) rather than replaced.
pub fn sign(
    secp: &Secp256k1<All>,
    inputs: &[Input],
    output: Vec<TxOut>,
    lock_time: absolute::LockTime,
) -> Result<Transaction, String> {
    let mut tx = Transaction {
        version: transaction::Version::TWO,
        lock_time,
        input: inputs
            .iter()
            .map(|i| TxIn {
                previous_output: i.coin.outpoint,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_LOCKTIME_NO_RBF,
                witness: Witness::new(),
            })
            .collect(),
        output,
    };
    let mut witnesses = Vec::with_capacity(inputs.len());
    {
        let mut cache = SighashCache::new(&tx);
        for (i, input) in inputs.iter().enumerate() {
            let value = input.coin.value;
            let all = EcdsaSighashType::All;
            let w = match &input.unlock {
                Unlock::P2wpkh(key) => {
                    let hash = cache
                        .p2wpkh_signature_hash(i, &input.coin.script, Amount::from_sat(value), all)
                        .map_err(|e| format!("sighash of input {i}: {e}"))?;
                    let s = ecdsa::Signature {
                        signature: secp.sign_ecdsa(&Message::from(hash), &key.secret),
                        sighash_type: all,
                    };
                    Witness::p2wpkh(&s, &key.public.inner)
                }
                Unlock::HtlcClaim {
                    key,
                    preimage,
                    script,
                } => {
                    let s = sig(secp, &mut cache, i, script, value, key, all)?;
                    Witness::from_slice(&[
                        s,
                        key.public.to_bytes(),
                        preimage.to_vec(),
                        vec![1],
                        script.to_bytes(),
                    ])
                }
                Unlock::HtlcRefund { key, script } => {
                    let s = sig(secp, &mut cache, i, script, value, key, all)?;
                    Witness::from_slice(&[s, key.public.to_bytes(), vec![], script.to_bytes()])
                }
                Unlock::EscrowCosigned { hub, owner, script } => {
                    let owner_sig = sig(
                        secp,
                        &mut cache,
                        i,
                        script,
                        value,
                        owner,
                        EcdsaSighashType::SinglePlusAnyoneCanPay,
                    )?;
                    let hub_sig = sig(secp, &mut cache, i, script, value, hub, all)?;
                    Witness::from_slice(&[vec![], hub_sig, owner_sig, vec![1], script.to_bytes()])
                }
                Unlock::EscrowRefund { owner, script } => {
                    let s = sig(secp, &mut cache, i, script, value, owner, all)?;
                    Witness::from_slice(&[s, vec![], script.to_bytes()])
                }
            };
            witnesses.push(w);
        }
    }
    for (input, w) in tx.input.iter_mut().zip(witnesses) {
        input.witness = w;
    }
    Ok(tx)
}
