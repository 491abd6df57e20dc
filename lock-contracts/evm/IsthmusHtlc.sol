// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {LockVault} from "./LockVault.sol";

/// @title Isthmus hashed timelock contract
/// @notice Many swaps per deployment, keyed by id. The beneficiary's claim reveals a 32-byte
/// preimage whose sha256 is the hashlock (the same hash and size on every chain, so a preimage
/// revealed here is always usable on the other leg); after the timeout only the owner's refund
/// remains. ETH or ERC-20.
contract IsthmusHtlc is LockVault {
    uint8 private constant NONE = 0;
    uint8 private constant OPEN = 1;
    uint8 private constant CLAIMED = 2;
    uint8 private constant REFUNDED = 3;

    struct Swap {
        address token; // address(0) for ETH
        address owner;
        address beneficiary;
        uint256 amount;
        bytes32 hashlock;
        uint64 timeout;
        uint8 state;
    }

    mapping(bytes32 => Swap) public swaps;

    event Locked(
        bytes32 indexed id,
        address indexed token,
        address owner,
        address beneficiary,
        uint256 amount,
        bytes32 hashlock,
        uint64 timeout
    );
    event Claimed(bytes32 indexed id, bytes32 preimage);
    event Refunded(bytes32 indexed id);


    function lock(
        bytes32 id,
        address token,
        uint256 amount,
        address beneficiary,
        bytes32 hashlock,
        uint64 timeout
    ) external payable nonReentrant {
        require(swaps[id].state == NONE, "id in use");
        require(amount > 0, "nothing locked");
        require(beneficiary != address(0), "zero beneficiary");
        require(timeout > block.timestamp, "timeout in the past");
        swaps[id] = Swap(token, msg.sender, beneficiary, amount, hashlock, timeout, OPEN);
        _take(token, amount);
        emit Locked(id, token, msg.sender, beneficiary, amount, hashlock, timeout);
    }

    /// The preimage is a bytes32: exactly 32 bytes, as on every other chain.
    function claim(bytes32 id, bytes32 preimage) external nonReentrant {
        Swap storage s = swaps[id];
        require(s.state == OPEN, "not open");
        require(block.timestamp < s.timeout, "expired");
        require(sha256(abi.encodePacked(preimage)) == s.hashlock, "wrong preimage");
        s.state = CLAIMED;
        emit Claimed(id, preimage);
        _pay(s.token, s.beneficiary, s.amount);
    }

    function refund(bytes32 id) external nonReentrant {
        Swap storage s = swaps[id];
        require(s.state == OPEN, "not open");
        require(block.timestamp >= s.timeout, "not expired");
        s.state = REFUNDED;
        emit Refunded(id);
        _pay(s.token, s.owner, s.amount);
    }
}
