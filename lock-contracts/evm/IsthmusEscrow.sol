// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {LockVault} from "./LockVault.sol";

/// @title Isthmus two-phase escrow
/// @notice Holds ETH or ERC-20 tokens under a lock id until the hub decides. `release` pays the
/// beneficiary only with at least `threshold` secp256k1 signatures by distinct hub attesters
/// over `digest(id, VALIDATED)`; `refund` pays the owner back with an `ABORTED` attestation,
/// or on anyone's call once the deadline has passed. Nothing is both released and refunded,
/// and every paying entry point holds the reentrancy guard.
contract IsthmusEscrow is LockVault {
    uint8 public constant VALIDATED = 1;
    uint8 public constant ABORTED = 2;
    /// Binds every signature to this contract's purpose (next to chain id and address).
    bytes32 public constant DOMAIN = keccak256("isthmus/evm-escrow/v1");
    // Half the secp256k1 group order: signatures with a larger `s` are malleable twins.
    uint256 private constant HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    uint8 private constant NONE = 0;
    uint8 private constant LOCKED = 1;
    uint8 private constant RELEASED = 2;
    uint8 private constant REFUNDED = 3;

    struct Lock {
        address token; // address(0) for ETH
        address owner;
        address beneficiary;
        uint256 amount;
        uint64 deadline;
        uint8 state;
    }

    mapping(bytes32 => Lock) public locks;
    mapping(address => bool) public isAttester;
    uint256 public immutable threshold;

    event Locked(
        bytes32 indexed id,
        address indexed token,
        address owner,
        address beneficiary,
        uint256 amount,
        uint64 deadline
    );
    event Released(bytes32 indexed id, address beneficiary, uint256 amount);
    event Refunded(bytes32 indexed id, address owner, uint256 amount);


    constructor(address[] memory attesters, uint256 threshold_) {
        require(threshold_ > 0 && threshold_ <= attesters.length, "bad threshold");
        for (uint256 i = 0; i < attesters.length; i++) {
            require(attesters[i] != address(0), "zero attester");
            require(!isAttester[attesters[i]], "duplicate attester");
            isAttester[attesters[i]] = true;
        }
        threshold = threshold_;
    }

    /// The digest hub attesters sign (raw, without the personal-message prefix).
    function digest(bytes32 id, uint8 decision) public view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN, block.chainid, address(this), id, decision));
    }

    /// Lock `amount` of `token` (address(0): ETH sent as value) under `id`. ERC-20 locks pull
    /// the tokens with `transferFrom`, so the owner approves this contract first.
    function lock(bytes32 id, address token, uint256 amount, address beneficiary, uint64 deadline)
        external
        payable
        nonReentrant
    {
        require(locks[id].state == NONE, "id in use");
        require(amount > 0, "nothing locked");
        require(beneficiary != address(0), "zero beneficiary");
        require(deadline > block.timestamp, "deadline in the past");
        locks[id] = Lock(token, msg.sender, beneficiary, amount, deadline, LOCKED);
        _take(token, amount);
        emit Locked(id, token, msg.sender, beneficiary, amount, deadline);
    }

    /// Pay the beneficiary on the hub's `VALIDATED` attestation.
    function release(bytes32 id, bytes[] calldata signatures) external nonReentrant {
        Lock storage l = locks[id];
        require(l.state == LOCKED, "not locked");
        _requireQuorum(digest(id, VALIDATED), signatures);
        l.state = RELEASED;
        emit Released(id, l.beneficiary, l.amount);
        _pay(l.token, l.beneficiary, l.amount);
    }

    /// Pay the owner back: with the hub's `ABORTED` attestation at any time, or by anyone
    /// (no signatures) once the deadline has passed.
    function refund(bytes32 id, bytes[] calldata signatures) external nonReentrant {
        Lock storage l = locks[id];
        require(l.state == LOCKED, "not locked");
        if (block.timestamp < l.deadline) {
            _requireQuorum(digest(id, ABORTED), signatures);
        }
        l.state = REFUNDED;
        emit Refunded(id, l.owner, l.amount);
        _pay(l.token, l.owner, l.amount);
    }

    /// Signatures are 65 bytes (r, s, v) by attesters in strictly ascending address order, which
    /// makes the signers distinct without storage.
    function _requireQuorum(bytes32 d, bytes[] calldata signatures) private view {
        require(signatures.length >= threshold, "too few signatures");
        address last = address(0);
        for (uint256 i = 0; i < signatures.length; i++) {
            bytes calldata sig = signatures[i];
            require(sig.length == 65, "signature length");
            bytes32 r = bytes32(sig[0:32]);
            bytes32 s = bytes32(sig[32:64]);
            uint8 v = uint8(sig[64]);
            require(uint256(s) <= HALF_N, "malleable signature");
            require(v == 27 || v == 28, "signature v");
            address signer = ecrecover(d, v, r, s);
            require(signer != address(0) && isAttester[signer], "not an attester");
            require(signer > last, "signers not distinct and ascending");
            last = signer;
        }
    }
}
