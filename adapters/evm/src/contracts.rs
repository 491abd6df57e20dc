//! The lock contracts' call interfaces and their compiled bytecode.
//!
//! The Solidity sources live in `lock-contracts/evm/`; `artifacts.json` next to them holds
//! the ABI and creation bytecode solc-js produced, and a test recompiles the sources and
//! proves the checked-in bytecode is what they compile to.

use alloy::primitives::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

alloy::sol! {
    #[sol(rpc)]
    interface IsthmusEscrow {
        event Locked(bytes32 indexed id, address indexed token, address owner, address beneficiary, uint256 amount, uint64 deadline);
        event Released(bytes32 indexed id, address beneficiary, uint256 amount);
        event Refunded(bytes32 indexed id, address owner, uint256 amount);
        function locks(bytes32 id) external view returns (address token, address owner, address beneficiary, uint256 amount, uint64 deadline, uint8 state);
        function threshold() external view returns (uint256);
        function isAttester(address who) external view returns (bool);
        function digest(bytes32 id, uint8 decision) external view returns (bytes32);
        function lock(bytes32 id, address token, uint256 amount, address beneficiary, uint64 deadline) external payable;
        function release(bytes32 id, bytes[] calldata signatures) external;
        function refund(bytes32 id, bytes[] calldata signatures) external;
    }

    #[sol(rpc)]
    interface IsthmusHtlc {
        event Locked(bytes32 indexed id, address indexed token, address owner, address beneficiary, uint256 amount, bytes32 hashlock, uint64 timeout);
        event Claimed(bytes32 indexed id, bytes32 preimage);
        event Refunded(bytes32 indexed id);
        function swaps(bytes32 id) external view returns (address token, address owner, address beneficiary, uint256 amount, bytes32 hashlock, uint64 timeout, uint8 state);
        function lock(bytes32 id, address token, uint256 amount, address beneficiary, bytes32 hashlock, uint64 timeout) external payable;
        function claim(bytes32 id, bytes32 preimage) external;
        function refund(bytes32 id) external;
    }

    #[sol(rpc)]
    interface Erc20 {
        function balanceOf(address account) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
        function approve(address spender, uint256 amount) external returns (bool);
        function transfer(address to, uint256 amount) external returns (bool);
        function mint(address to, uint256 amount) external;
    }
}

/// Lock states as the contracts number them.
pub const STATE_NONE: u8 = 0;
pub const STATE_OPEN: u8 = 1;

/// The checked-in compiler output.
pub const ARTIFACTS_JSON: &str = include_str!("../../../lock-contracts/evm/artifacts.json");

/// The Solidity sources, by the file name the artifacts were compiled under.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "IERC20Minimal.sol",
        include_str!("../../../lock-contracts/evm/IERC20Minimal.sol"),
    ),
    (
        "LockVault.sol",
        include_str!("../../../lock-contracts/evm/LockVault.sol"),
    ),
    (
        "IsthmusEscrow.sol",
        include_str!("../../../lock-contracts/evm/IsthmusEscrow.sol"),
    ),
    (
        "IsthmusHtlc.sol",
        include_str!("../../../lock-contracts/evm/IsthmusHtlc.sol"),
    ),
    (
        "TestToken.sol",
        include_str!("../../../lock-contracts/evm/TestToken.sol"),
    ),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    pub abi: serde_json::Value,
    pub bytecode: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifacts {
    pub compiler: String,
    pub contracts: BTreeMap<String, Artifact>,
}

impl Artifacts {
    pub fn load() -> Result<Artifacts, String> {
        serde_json::from_str(ARTIFACTS_JSON).map_err(|e| format!("artifacts.json: {e}"))
    }

    /// The creation bytecode of `name`.
    pub fn bytecode(&self, name: &str) -> Result<Bytes, String> {
        let a = self
            .contracts
            .get(name)
            .ok_or_else(|| format!("no artifact for contract {name}"))?;
        a.bytecode
            .parse::<Bytes>()
            .map_err(|e| format!("bytecode of {name}: {e}"))
    }
}

/// The solc standard-json input the artifacts are compiled from.
pub fn standard_json_input() -> serde_json::Value {
    let sources: serde_json::Map<String, serde_json::Value> = SOURCES
        .iter()
        .map(|(name, text)| ((*name).to_owned(), serde_json::json!({ "content": text })))
        .collect();
    serde_json::json!({
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "optimizer": { "enabled": true, "runs": 200 },
            "evmVersion": "cancun",
            "metadata": { "bytecodeHash": "none" },
            "outputSelection": { "*": { "*": ["abi", "evm.bytecode.object"] } }
        }
    })
}
