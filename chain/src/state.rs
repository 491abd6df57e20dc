//! Account state, module storage, transaction execution and the deterministic state root.
//!
//! Execution never mutates the committed [`State`] directly: [`State::execute`] runs a
//! block's transactions against an overlay and returns a [`StateDiff`]; the diff is applied
//! only after the block is accepted (and written to storage in the same atomic batch).
//!
//! **State root:** the Merkle root (see [`crate::merkle`]) over every entry in key order,
//! where each leaf is `key_len (u32 BE) | key | value`. Accounts are keyed
//! `"a/" | account id` and valued with the positional msgpack of [`Account`]; module
//! storage is keyed `"m/" | module | "/" | module key`.

use crate::merkle;
pub use crate::module_error::ModuleError;
use crate::tx::{encode_canonical, Transaction, TxError, TxKind};
use isthmus_core::{Hash32, HashAlgo, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub balance: u64,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
}

/// Protocol rules that change with scheduled upgrades (see `config::Upgrade`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecRules {
    pub version: u32,
    /// Soft-fork example: from the version that sets it, zero-amount transfers are invalid.
    pub forbid_zero_transfers: bool,
}

/// Storage visible to a module during one call. Writes (storage and balance moves) are
/// buffered and dropped if the call fails.
///
/// A module moves native balance only between the calling transaction's signer and its own
/// module account ([`module_account`]), which no key controls: it can take what the signer
/// authorised by signing the call, and pay out only what it holds.
pub struct ModuleStore<'a> {
    module: &'a str,
    sender: NodeId,
    base: &'a State,
    diff: &'a StateDiff,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    accounts: BTreeMap<NodeId, Account>,
}

impl ModuleStore<'_> {
    /// The account this module holds balance in.
    pub fn module_account(&self) -> NodeId {
        module_account(self.module)
    }

    /// The balance of `id` as this call sees it.
    pub fn balance_of(&self, id: &NodeId) -> u64 {
        self.account(id).balance
    }

    fn account(&self, id: &NodeId) -> Account {
        if let Some(a) = self.accounts.get(id) {
            return *a;
        }
        self.diff
            .accounts
            .get(id)
            .copied()
            .unwrap_or_else(|| self.base.account(id))
    }

    fn transfer(&mut self, from: NodeId, to: NodeId, amount: u64) -> Result<(), ModuleError> {
        let mut src = self.account(&from);
        if src.balance < amount {
            return Err(ModuleError::InsufficientFunds {
                account: from,
                have: src.balance,
                need: amount,
            });
        }
        if from == to {
            return Ok(());
        }
        let mut dst = self.account(&to);
        dst.balance = dst
            .balance
            .checked_add(amount)
            .ok_or(ModuleError::BalanceOverflow(to))?;
        src.balance -= amount;
        self.accounts.insert(from, src);
        self.accounts.insert(to, dst);
        Ok(())
    }

    /// Move `amount` from the transaction's signer into this module's account.
    pub fn take_from_sender(&mut self, amount: u64) -> Result<(), ModuleError> {
        self.transfer(self.sender, self.module_account(), amount)
    }

    /// Pay `amount` out of this module's account to `to`.
    pub fn pay_out(&mut self, to: NodeId, amount: u64) -> Result<(), ModuleError> {
        self.transfer(self.module_account(), to, amount)
    }

    fn full_key(&self, key: &[u8]) -> Vec<u8> {
        module_key(self.module, key)
    }

    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let k = self.full_key(key);
        if let Some(v) = self.writes.get(&k) {
            return v.clone();
        }
        if let Some(v) = self.diff.kv.get(&k) {
            return v.clone();
        }
        self.base.kv.get(&k).cloned()
    }

    pub fn put(&mut self, key: &[u8], value: Vec<u8>) {
        let k = self.full_key(key);
        self.writes.insert(k, Some(value));
    }

    pub fn delete(&mut self, key: &[u8]) {
        let k = self.full_key(key);
        self.writes.insert(k, None);
    }
}

/// What a module call sees about its transaction.
#[derive(Debug, Clone, Copy)]
pub struct CallCtx {
    pub sender: NodeId,
    pub height: u64,
    pub timestamp_ms: u64,
    pub tx_id: Hash32,
}

/// A native module reachable through [`TxKind::ModuleCall`]. Must be deterministic: every
/// node runs it on the same inputs and must reach the same state root.
pub trait Module: Send + Sync + 'static {
    /// Run `method`. An `Err` reverts the call's writes; the transaction still consumes its
    /// nonce and its failure (code and message) is recorded in the block's receipts.
    fn call(
        &self,
        ctx: &CallCtx,
        store: &mut ModuleStore<'_>,
        method: &str,
        args: &[u8],
    ) -> Result<(), ModuleError>;
}

/// The registered modules, by name.
#[derive(Clone, Default)]
pub struct Modules(BTreeMap<String, Arc<dyn Module>>);

impl Modules {
    /// The built-in set: just [`KvModule`] under the name `kv`.
    pub fn builtin() -> Modules {
        let mut m = Modules::default();
        m.register("kv", Arc::new(KvModule));
        m.register(crate::audit::MODULE, Arc::new(crate::audit::AuditModule));
        m
    }

    /// The modules every node of the network `cfg` runs: the built-in set plus the native
    /// escrow under [`crate::escrow::MODULE`], configured from the network's genesis, and
    /// the hub's decision record under [`crate::escrow::DECISIONS_MODULE`].
    pub fn for_network(cfg: &crate::config::NetworkConfig) -> Modules {
        let mut m = Self::builtin();
        m.register(
            crate::packets::MODULE,
            Arc::new(crate::packets::PacketsModule::from_config(cfg)),
        );
        m.register(
            crate::escrow::MODULE,
            Arc::new(crate::escrow::EscrowModule::from_config(cfg)),
        );
        m.register(
            crate::escrow::DECISIONS_MODULE,
            Arc::new(crate::escrow::DecisionModule),
        );
        m
    }

    pub fn register(&mut self, name: &str, module: Arc<dyn Module>) {
        self.0.insert(name.to_owned(), module);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    fn get(&self, name: &str) -> Option<&Arc<dyn Module>> {
        self.0.get(name)
    }
}

impl std::fmt::Debug for Modules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// A small key-value module: `put` stores `args = msgpack (key, value)` under
/// `sender | key`; `delete` removes `args = msgpack key`. Useful for tests and demos.
pub struct KvModule;

impl Module for KvModule {
    fn call(
        &self,
        ctx: &CallCtx,
        store: &mut ModuleStore<'_>,
        method: &str,
        args: &[u8],
    ) -> Result<(), ModuleError> {
        let scoped = |k: &[u8]| {
            let mut v = ctx.sender.0.to_vec();
            v.extend_from_slice(k);
            v
        };
        match method {
            "put" => {
                let (k, v): (serde_bytes::ByteBuf, serde_bytes::ByteBuf) =
                    rmp_serde::from_slice(args).map_err(|e| ModuleError::bad_args(method, e))?;
                store.put(&scoped(&k), v.into_vec());
                Ok(())
            }
            "delete" => {
                let k: serde_bytes::ByteBuf =
                    rmp_serde::from_slice(args).map_err(|e| ModuleError::bad_args(method, e))?;
                store.delete(&scoped(&k));
                Ok(())
            }
            other => Err(ModuleError::unknown_method("kv", other)),
        }
    }
}

/// The full storage key of a module's key.
pub fn module_key(module: &str, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + module.len() + key.len());
    k.extend_from_slice(b"m/");
    k.extend_from_slice(module.as_bytes());
    k.push(b'/');
    k.extend_from_slice(key);
    k
}

/// The account a module holds native balance in: a hash, not a public key anyone holds the
/// secret of, so only the module's own code can move what it holds.
pub fn module_account(module: &str) -> NodeId {
    NodeId(
        HashAlgo::Sha256
            .digest_parts(&[b"isthmus/module-account/v1\x00", module.as_bytes()])
            .0,
    )
}

/// The storage key of an account.
pub fn account_key(id: &NodeId) -> Vec<u8> {
    let mut k = b"a/".to_vec();
    k.extend_from_slice(&id.0);
    k
}

/// The outcome of one transaction in a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub tx_id: Hash32,
    /// `None` on success, the module's error message otherwise.
    pub error: Option<String>,
    /// `None` on success, the stable reason code of the module's error otherwise (see
    /// [`ModuleError::code`]). Absent from receipts recorded before codes existed.
    #[serde(default)]
    pub code: Option<String>,
}

impl Receipt {
    /// The receipt of a transaction that took effect.
    pub fn ok(tx_id: Hash32) -> Receipt {
        Receipt {
            tx_id,
            error: None,
            code: None,
        }
    }

    /// The receipt of a module call refused with `e`.
    pub fn refused(tx_id: Hash32, e: &ModuleError) -> Receipt {
        Receipt {
            tx_id,
            error: Some(e.to_string()),
            code: Some(e.code().to_owned()),
        }
    }

    /// The receipt of `outcome`: `None` on success, the module's error otherwise.
    pub fn of(tx_id: Hash32, outcome: Option<&ModuleError>) -> Receipt {
        match outcome {
            None => Receipt::ok(tx_id),
            Some(e) => Receipt::refused(tx_id, e),
        }
    }

    /// Whether the transaction took effect.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

/// New values of the entries a block touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateDiff {
    pub accounts: BTreeMap<NodeId, Account>,
    pub kv: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

/// Old values of the entries a block touched, to revert it in a reorg.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    pub accounts: BTreeMap<NodeId, Option<Account>>,
    pub kv: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl StateDiff {
    /// Storage writes of this diff (state key → value).
    pub fn entries(&self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::with_capacity(self.accounts.len() + self.kv.len());
        for (id, a) in &self.accounts {
            out.push((account_key(id), Some(encode_canonical(a))));
        }
        for (k, v) in &self.kv {
            out.push((k.clone(), v.clone()));
        }
        out
    }
}

/// The committed state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    accounts: BTreeMap<NodeId, Account>,
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl State {
    pub fn genesis(allocations: impl IntoIterator<Item = (NodeId, u64)>) -> State {
        let mut s = State::default();
        for (id, balance) in allocations {
            s.accounts.entry(id).or_default().balance += balance;
        }
        s
    }

    pub fn account(&self, id: &NodeId) -> Account {
        self.accounts.get(id).copied().unwrap_or_default()
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&NodeId, &Account)> {
        self.accounts.iter()
    }

    /// Read a raw state entry by its full key (see [`account_key`], [`module_key`]).
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        if let Some(id) = key.strip_prefix(b"a/") {
            let id: [u8; 32] = id.try_into().ok()?;
            return self.accounts.get(&NodeId(id)).map(encode_canonical);
        }
        self.kv.get(key).cloned()
    }

    /// Number of entries (accounts + module keys).
    pub fn len(&self) -> usize {
        self.accounts.len() + self.kv.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Insert a raw entry while loading from storage.
    pub(crate) fn load_entry(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        if let Some(id) = key.strip_prefix(b"a/") {
            let id: [u8; 32] = id
                .try_into()
                .map_err(|_| format!("account key of {} bytes", key.len()))?;
            let acct: Account =
                rmp_serde::from_slice(value).map_err(|e| format!("bad account record: {e}"))?;
            self.accounts.insert(NodeId(id), acct);
        } else {
            self.kv.insert(key.to_vec(), value.to_vec());
        }
        Ok(())
    }

    /// Check the transaction against current state as the mempool sees it: nonce must not
    /// be stale, the sender must afford it. `pending_nonce` is the next nonce after the
    /// sender's transactions already in the mempool.
    pub fn check_admission(
        &self,
        tx: &Transaction,
        pending_nonce: Option<u64>,
        rules: &ExecRules,
        modules: &Modules,
    ) -> Result<(), TxError> {
        let acct = self.account(&tx.body.from);
        let expected = pending_nonce.unwrap_or(acct.nonce);
        if tx.body.nonce != expected {
            return Err(TxError::BadNonce {
                account: tx.body.from,
                expected,
                got: tx.body.nonce,
            });
        }
        match &tx.body.kind {
            TxKind::Transfer { amount, .. } => {
                if *amount == 0 && rules.forbid_zero_transfers {
                    return Err(TxError::ZeroAmount(rules.version));
                }
                if acct.balance < *amount {
                    return Err(TxError::InsufficientBalance {
                        account: tx.body.from,
                        have: acct.balance,
                        need: *amount,
                    });
                }
            }
            TxKind::ModuleCall { module, .. } => {
                if !modules.contains(module) {
                    return Err(TxError::UnknownModule(module.clone()));
                }
            }
        }
        Ok(())
    }

    /// Execute `txs` in order against this state (signatures are assumed verified). Fails
    /// with the index of the first invalid transaction.
    pub fn execute(
        &self,
        txs: &[Transaction],
        tx_ids: &[Hash32],
        height: u64,
        timestamp_ms: u64,
        rules: &ExecRules,
        modules: &Modules,
    ) -> Result<(StateDiff, Vec<Receipt>), (usize, TxError)> {
        let mut diff = StateDiff::default();
        let mut receipts = Vec::with_capacity(txs.len());
        for (i, tx) in txs.iter().enumerate() {
            let id = tx_ids.get(i).copied().unwrap_or_default();
            let error = self
                .apply_one(&mut diff, tx, id, height, timestamp_ms, rules, modules)
                .map_err(|e| (i, e))?;
            receipts.push(Receipt::of(id, error.as_ref()));
        }
        Ok((diff, receipts))
    }

    /// Like [`execute`](Self::execute) but skips transactions that fail, returning their
    /// indexes (block building).
    pub fn execute_lenient(
        &self,
        txs: &[Transaction],
        tx_ids: &[Hash32],
        height: u64,
        timestamp_ms: u64,
        rules: &ExecRules,
        modules: &Modules,
    ) -> (StateDiff, Vec<Receipt>, Vec<usize>) {
        let mut diff = StateDiff::default();
        let mut receipts = Vec::with_capacity(txs.len());
        let mut skipped = Vec::new();
        for (i, tx) in txs.iter().enumerate() {
            let id = tx_ids.get(i).copied().unwrap_or_default();
            match self.apply_one(&mut diff, tx, id, height, timestamp_ms, rules, modules) {
                Ok(error) => receipts.push(Receipt::of(id, error.as_ref())),
                Err(_) => skipped.push(i),
            }
        }
        (diff, receipts, skipped)
    }

    /// The record that reverts `diff` on this state (old values; `None` = absent).
    pub fn undo_for(&self, diff: &StateDiff) -> Undo {
        Undo {
            accounts: diff
                .accounts
                .keys()
                .map(|id| (*id, self.accounts.get(id).copied()))
                .collect(),
            kv: diff
                .kv
                .keys()
                .map(|k| (k.clone(), self.kv.get(k).cloned()))
                .collect(),
        }
    }

    /// Revert a block with its undo record.
    pub fn revert(&mut self, undo: &Undo) {
        for (id, a) in &undo.accounts {
            match a {
                Some(a) => {
                    self.accounts.insert(*id, *a);
                }
                None => {
                    self.accounts.remove(id);
                }
            }
        }
        for (k, v) in &undo.kv {
            match v {
                Some(v) => {
                    self.kv.insert(k.clone(), v.clone());
                }
                None => {
                    self.kv.remove(k);
                }
            }
        }
    }

    /// Current storage entries for `keys` (state key → value or `None` if absent), for
    /// writing the result of a reorg.
    pub fn entries_for(
        &self,
        accounts: &BTreeSet<NodeId>,
        kv: &BTreeSet<Vec<u8>>,
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::with_capacity(accounts.len() + kv.len());
        for id in accounts {
            out.push((account_key(id), self.accounts.get(id).map(encode_canonical)));
        }
        for k in kv {
            out.push((k.clone(), self.kv.get(k).cloned()));
        }
        out
    }

    fn current(&self, diff: &StateDiff, id: &NodeId) -> Account {
        diff.accounts
            .get(id)
            .copied()
            .unwrap_or_else(|| self.account(id))
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_one(
        &self,
        diff: &mut StateDiff,
        tx: &Transaction,
        tx_id: Hash32,
        height: u64,
        timestamp_ms: u64,
        rules: &ExecRules,
        modules: &Modules,
    ) -> Result<Option<ModuleError>, TxError> {
        let from = tx.body.from;
        let mut sender = self.current(diff, &from);
        if tx.body.nonce != sender.nonce {
            return Err(TxError::BadNonce {
                account: from,
                expected: sender.nonce,
                got: tx.body.nonce,
            });
        }
        sender.nonce += 1;
        match &tx.body.kind {
            TxKind::Transfer { to, amount } => {
                if *amount == 0 && rules.forbid_zero_transfers {
                    return Err(TxError::ZeroAmount(rules.version));
                }
                if sender.balance < *amount {
                    return Err(TxError::InsufficientBalance {
                        account: from,
                        have: sender.balance,
                        need: *amount,
                    });
                }
                sender.balance -= amount;
                if *to == from {
                    sender.balance += amount;
                    diff.accounts.insert(from, sender);
                    return Ok(None);
                }
                // Check the credit before touching the diff, so a failed transaction
                // leaves no trace (block building skips it and carries on).
                let mut recv = self.current(diff, to);
                recv.balance = recv
                    .balance
                    .checked_add(*amount)
                    .ok_or(TxError::Overflow(*to))?;
                diff.accounts.insert(from, sender);
                diff.accounts.insert(*to, recv);
                Ok(None)
            }
            TxKind::ModuleCall {
                module,
                method,
                args,
            } => {
                let m = modules
                    .get(module)
                    .ok_or_else(|| TxError::UnknownModule(module.clone()))?;
                diff.accounts.insert(from, sender);
                let ctx = CallCtx {
                    sender: from,
                    height,
                    timestamp_ms,
                    tx_id,
                };
                let mut store = ModuleStore {
                    module,
                    sender: from,
                    base: self,
                    diff,
                    writes: BTreeMap::new(),
                    accounts: BTreeMap::new(),
                };
                match m.call(&ctx, &mut store, method, args) {
                    Ok(()) => {
                        let ModuleStore {
                            writes, accounts, ..
                        } = store;
                        diff.kv.extend(writes);
                        diff.accounts.extend(accounts);
                        Ok(None)
                    }
                    Err(e) => Ok(Some(e)),
                }
            }
        }
    }

    /// Apply an accepted block's diff.
    pub fn apply(&mut self, diff: &StateDiff) {
        for (id, a) in &diff.accounts {
            self.accounts.insert(*id, *a);
        }
        for (k, v) in &diff.kv {
            match v {
                Some(v) => {
                    self.kv.insert(k.clone(), v.clone());
                }
                None => {
                    self.kv.remove(k);
                }
            }
        }
    }

    /// The state root this state would have after `diff`.
    pub fn root_with(&self, algo: HashAlgo, diff: &StateDiff) -> Hash32 {
        let mut leaves = Vec::with_capacity(self.len() + diff.accounts.len());
        let mut accts: BTreeMap<&NodeId, &Account> = self.accounts.iter().collect();
        for (id, a) in &diff.accounts {
            accts.insert(id, a);
        }
        for (id, a) in accts {
            leaves.push(entry_leaf(algo, &account_key(id), &encode_canonical(a)));
        }
        let mut kv: BTreeMap<&Vec<u8>, Option<&Vec<u8>>> =
            self.kv.iter().map(|(k, v)| (k, Some(v))).collect();
        for (k, v) in &diff.kv {
            kv.insert(k, v.as_ref());
        }
        for (k, v) in kv {
            if let Some(v) = v {
                leaves.push(entry_leaf(algo, k, v));
            }
        }
        merkle::root_of_leaves(algo, &leaves)
    }

    pub fn root(&self, algo: HashAlgo) -> Hash32 {
        self.root_with(algo, &StateDiff::default())
    }

    /// The value of entry `key` and its Merkle path to [`State::root`] (leaves in the
    /// root's order: accounts, then module keys). `None` if the entry is absent.
    pub fn entry_proof(
        &self,
        algo: HashAlgo,
        key: &[u8],
    ) -> Option<(Vec<u8>, merkle::MerkleProof)> {
        self.entry_proofs(algo, &[key.to_vec()]).pop().flatten()
    }

    /// [`State::entry_proof`] for several keys, hashing the tree once.
    pub fn entry_proofs(
        &self,
        algo: HashAlgo,
        keys: &[Vec<u8>],
    ) -> Vec<Option<(Vec<u8>, merkle::MerkleProof)>> {
        let mut leaves = Vec::with_capacity(self.len());
        let mut at: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        let wanted: BTreeSet<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        for (id, a) in &self.accounts {
            let k = account_key(id);
            if wanted.contains(k.as_slice()) {
                at.insert(k.clone(), leaves.len());
            }
            leaves.push(entry_leaf(algo, &k, &encode_canonical(a)));
        }
        for (k, v) in &self.kv {
            if wanted.contains(k.as_slice()) {
                at.insert(k.clone(), leaves.len());
            }
            leaves.push(entry_leaf(algo, k, v));
        }
        // Absent keys ask for an index past the end, which has no proof.
        let indices: Vec<usize> = keys
            .iter()
            .map(|k| at.get(k).copied().unwrap_or(usize::MAX))
            .collect();
        keys.iter()
            .zip(merkle::MerkleProof::build_many(algo, &leaves, &indices))
            .map(|(k, p)| Some((self.get(k)?, p?)))
            .collect()
    }
}

/// The state-tree leaf of entry `key` = `value` (see the module docs).
pub fn entry_leaf(algo: HashAlgo, key: &[u8], value: &[u8]) -> Hash32 {
    let len = (key.len() as u32).to_be_bytes();
    algo.digest_parts(&[&[0u8], &len, key, value])
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_core::{Keypair, NetworkId};

    const NET: NetworkId = NetworkId(1);
    const V1: ExecRules = ExecRules {
        version: 1,
        forbid_zero_transfers: false,
    };

    #[test]
    fn entry_proofs_reach_the_state_root_and_absent_entries_have_none() {
        let ids: Vec<NodeId> = (0..5)
            .map(|i| Keypair::dev(&format!("e{i}")).id())
            .collect();
        let mut s = State::genesis(ids.iter().map(|id| (*id, 7)));
        for i in 0..6u8 {
            s.kv.insert(module_key("kv", &[i]), vec![i; 3]);
        }
        let algo = HashAlgo::Sha256;
        let root = s.root(algo);
        let keys = ids
            .iter()
            .map(account_key)
            .chain((0..6u8).map(|i| module_key("kv", &[i])));
        for k in keys {
            let (v, p) = s.entry_proof(algo, &k).unwrap();
            assert_eq!(Some(v.clone()), s.get(&k));
            p.verify(algo, entry_leaf(algo, &k, &v), &root).unwrap();
            // Another value under the same key does not reach the root.
            assert!(p
                .verify(algo, entry_leaf(algo, &k, b"forged"), &root)
                .is_err());
        }
        assert!(s.entry_proof(algo, &module_key("kv", &[9])).is_none());
    }

    #[test]
    fn transfers_nonces_and_roots() {
        let a = Keypair::dev("a");
        let b = Keypair::dev("b");
        let s = State::genesis([(a.id(), 100)]);
        let r0 = s.root(HashAlgo::Sha256);
        let t0 = Transaction::transfer(&a, NET, 0, b.id(), 30);
        let t1 = Transaction::transfer(&a, NET, 1, b.id(), 30);
        let m = Modules::builtin();
        let (diff, _) = s.execute(&[t0.clone(), t1], &[], 1, 0, &V1, &m).unwrap();
        let predicted = s.root_with(HashAlgo::Sha256, &diff);
        let mut s2 = s.clone();
        s2.apply(&diff);
        assert_eq!(s2.root(HashAlgo::Sha256), predicted);
        assert_ne!(predicted, r0);
        assert_eq!(
            s2.account(&a.id()),
            Account {
                balance: 40,
                nonce: 2
            }
        );
        assert_eq!(s2.account(&b.id()).balance, 60);
        // replay of nonce 0 is refused
        assert!(matches!(
            s2.execute(&[t0], &[], 2, 0, &V1, &m),
            Err((
                0,
                TxError::BadNonce {
                    expected: 2,
                    got: 0,
                    ..
                }
            ))
        ));
        let over = Transaction::transfer(&a, NET, 2, b.id(), 41);
        assert!(matches!(
            s2.execute(&[over], &[], 2, 0, &V1, &m),
            Err((
                0,
                TxError::InsufficientBalance {
                    have: 40,
                    need: 41,
                    ..
                }
            ))
        ));
    }

    #[test]
    fn module_calls_write_scoped_state_and_failures_revert() {
        let a = Keypair::dev("a");
        let s = State::genesis([(a.id(), 1)]);
        let m = Modules::builtin();
        let args =
            rmp_serde::to_vec(&(serde_bytes::Bytes::new(b"k"), serde_bytes::Bytes::new(b"v")))
                .unwrap();
        let ok = Transaction::sign(
            &a,
            NET,
            0,
            TxKind::ModuleCall {
                module: "kv".into(),
                method: "put".into(),
                args,
            },
        );
        let bad = Transaction::sign(
            &a,
            NET,
            1,
            TxKind::ModuleCall {
                module: "kv".into(),
                method: "nope".into(),
                args: vec![],
            },
        );
        let (diff, receipts) = s.execute(&[ok, bad], &[], 1, 0, &V1, &m).unwrap();
        assert_eq!(receipts[0], Receipt::ok(receipts[0].tx_id));
        assert_eq!(receipts[1].code.as_deref(), Some("unknown_method"));
        assert!(receipts[1].error.as_deref().unwrap().contains("nope"));
        let mut s2 = s.clone();
        s2.apply(&diff);
        let mut key = a.id().0.to_vec();
        key.extend_from_slice(b"k");
        assert_eq!(s2.get(&module_key("kv", &key)), Some(b"v".to_vec()));
        assert_eq!(s2.account(&a.id()).nonce, 2);
        let unknown = Transaction::sign(
            &a,
            NET,
            2,
            TxKind::ModuleCall {
                module: "zz".into(),
                method: "x".into(),
                args: vec![],
            },
        );
        assert!(matches!(
            s2.check_admission(&unknown, None, &V1, &m),
            Err(TxError::UnknownModule(_))
        ));
    }

    #[test]
    fn receipts_recorded_before_codes_still_decode() {
        #[derive(Serialize)]
        struct OldReceipt {
            tx_id: Hash32,
            error: Option<String>,
        }
        let old = OldReceipt {
            tx_id: Hash32([3; 32]),
            error: Some("kv has no method `nope`".into()),
        };
        let want = Receipt {
            tx_id: old.tx_id,
            error: old.error.clone(),
            code: None,
        };
        let positional: Receipt = rmp_serde::from_slice(&rmp_serde::to_vec(&old).unwrap()).unwrap();
        let named: Receipt =
            rmp_serde::from_slice(&rmp_serde::to_vec_named(&old).unwrap()).unwrap();
        let json: Receipt = serde_json::from_str(&serde_json::to_string(&old).unwrap()).unwrap();
        assert_eq!((&positional, &named, &json), (&want, &want, &want));
        // A new receipt round-trips with its code.
        let new = Receipt::refused(old.tx_id, &ModuleError::unknown_method("kv", "nope"));
        assert_eq!(new.error, old.error);
        let back: Receipt = rmp_serde::from_slice(&encode_canonical(&new)).unwrap();
        assert_eq!(back.code.as_deref(), Some("unknown_method"));
    }

    #[test]
    fn soft_fork_rule_refuses_zero_transfers() {
        let a = Keypair::dev("a");
        let s = State::genesis([(a.id(), 1)]);
        let zero = Transaction::transfer(&a, NET, 0, a.id(), 0);
        let m = Modules::builtin();
        assert!(s
            .execute(std::slice::from_ref(&zero), &[], 1, 0, &V1, &m)
            .is_ok());
        let v2 = ExecRules {
            version: 2,
            forbid_zero_transfers: true,
        };
        assert!(matches!(
            s.execute(&[zero], &[], 1, 0, &v2, &m),
            Err((0, TxError::ZeroAmount(2)))
        ));
    }
}
