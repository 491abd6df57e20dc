//! An in-process EVM (revm) for running the Solidity and Vyper output.

use crate::outcome::{Class, Outcome};
use anyhow::{anyhow, Result};
use revm::bytecode::Bytecode;
use revm::context::result::{ExecutionResult, HaltReason, Output};
use revm::context::TxEnv;
use revm::database::{CacheDB, EmptyDB};
use revm::primitives::{Address, Bytes, TxKind, U256};
use revm::state::AccountInfo;
use revm::{Context, ExecuteCommitEvm, MainBuilder, MainContext};

pub struct Chain {
    db: CacheDB<EmptyDB>,
    pub contract: Option<Address>,
    gas_limit: u64,
}

pub fn address(word: &[u8; 32]) -> Address {
    Address::from_slice(&word[12..])
}

impl Chain {
    pub fn new(accounts: &[[u8; 32]], funds: U256, gas_limit: u64) -> Chain {
        let mut db = CacheDB::new(EmptyDB::default());
        for a in accounts {
            db.insert_account_info(address(a), AccountInfo::from_balance(funds));
        }
        Chain {
            db,
            contract: None,
            gas_limit,
        }
    }

    /// Places runtime `code` with `funds` at `at`, as if deployed there.
    pub fn install(&mut self, at: &[u8; 32], code: Vec<u8>, funds: U256) {
        let info = AccountInfo::from_balance(funds).with_code(Bytecode::new_raw(Bytes::from(code)));
        self.db.insert_account_info(address(at), info);
    }

    /// Calls `to` (not the contract under test) from `from`.
    pub fn call_to(
        &mut self,
        from: &[u8; 32],
        to: &[u8; 32],
        data: Vec<u8>,
    ) -> Result<ExecutionResult<HaltReason>> {
        self.run(from, TxKind::Call(address(to)), data, U256::ZERO, 0, 0)
    }

    fn run(
        &mut self,
        from: &[u8; 32],
        kind: TxKind,
        data: Vec<u8>,
        value: U256,
        time: u64,
        height: u64,
    ) -> Result<ExecutionResult<HaltReason>> {
        let db = std::mem::take(&mut self.db);
        let mut evm = Context::mainnet()
            .with_db(db)
            .modify_cfg_chained(|c| {
                c.disable_nonce_check = true;
                // The reentrancy attacker is a contract that also sends transactions.
                c.disable_eip3607 = true;
                c.limit_contract_code_size = Some(usize::MAX);
            })
            .modify_block_chained(|b| {
                b.timestamp = U256::from(time);
                b.number = U256::from(height);
                b.gas_limit = u64::MAX;
            })
            .build_mainnet();
        let tx = TxEnv {
            caller: address(from),
            kind,
            data: Bytes::from(data),
            value,
            gas_limit: self.gas_limit,
            gas_price: 0,
            ..Default::default()
        };
        let r = evm.transact_commit(tx);
        self.db = evm.ctx.journaled_state.database;
        r.map_err(|e| anyhow!("evm error: {e:?}"))
    }

    pub fn deploy(
        &mut self,
        from: &[u8; 32],
        code: Vec<u8>,
        value: U256,
        time: u64,
        height: u64,
        events: &[([u8; 32], String)],
    ) -> Result<Outcome> {
        let r = self.run(from, TxKind::Create, code, value, time, height)?;
        if let ExecutionResult::Success {
            output: Output::Create(_, Some(addr)),
            ..
        } = &r
        {
            self.contract = Some(*addr);
        }
        Ok(classify(r, events))
    }

    pub fn call(
        &mut self,
        from: &[u8; 32],
        data: Vec<u8>,
        value: U256,
        time: u64,
        height: u64,
        events: &[([u8; 32], String)],
    ) -> Result<Outcome> {
        let to = self
            .contract
            .ok_or_else(|| anyhow!("contract was not deployed"))?;
        let r = self.run(from, TxKind::Call(to), data, value, time, height)?;
        Ok(classify(r, events))
    }
}

fn classify(r: ExecutionResult<HaltReason>, events: &[([u8; 32], String)]) -> Outcome {
    match r {
        ExecutionResult::Success { output, logs, .. } => {
            let data = match output {
                Output::Call(b) => b.to_vec(),
                Output::Create(..) => Vec::new(),
            };
            let evs = logs
                .iter()
                .map(|l| {
                    let name = l
                        .topics()
                        .first()
                        .and_then(|t| events.iter().find(|(h, _)| h == &t.0))
                        .map_or_else(|| "?".to_string(), |(_, n)| n.clone());
                    (name, l.data.data.to_vec())
                })
                .collect();
            Outcome {
                data,
                events: evs,
                ..Outcome::new(Class::Success)
            }
        }
        ExecutionResult::Revert { output, .. } => Outcome::new(Class::from_revert_data(&output)),
        ExecutionResult::Halt {
            reason, gas_used, ..
        } => match reason {
            HaltReason::OutOfGas(kind) => Outcome {
                stop: Some(format!(
                    "evm halted: out of gas ({kind:?}) after {gas_used} gas"
                )),
                ..Outcome::new(Class::OutOfGas)
            },
            other => Outcome::new(Class::Trap(format!("{other:?}"))),
        },
    }
}
