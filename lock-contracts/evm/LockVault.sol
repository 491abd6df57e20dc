// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20Minimal} from "./IERC20Minimal.sol";

/// @title What both lock contracts share: the reentrancy guard and moving ETH or ERC-20 tokens
/// in and out. `token == address(0)` means ETH.
abstract contract LockVault {
    uint256 private entered = 1;

    modifier nonReentrant() {
        require(entered == 1, "reentrant call");
        entered = 2;
        _;
        entered = 1;
    }

    /// Take `amount` from the caller: ETH as the call's value, or tokens with `transferFrom`
    /// (the caller approves this contract first). Tokens that take a fee are refused, so the
    /// contract always holds exactly what it recorded.
    function _take(address token, uint256 amount) internal {
        if (token == address(0)) {
            require(msg.value == amount, "value differs from amount");
        } else {
            require(msg.value == 0, "value sent with a token lock");
            uint256 before = IERC20Minimal(token).balanceOf(address(this));
            _call(token, abi.encodeCall(IERC20Minimal.transferFrom, (msg.sender, address(this), amount)));
            require(IERC20Minimal(token).balanceOf(address(this)) - before == amount, "token took a fee");
        }
    }

    function _pay(address token, address to, uint256 amount) internal {
        if (token == address(0)) {
            (bool ok,) = to.call{value: amount}("");
            require(ok, "eth transfer failed");
        } else {
            _call(token, abi.encodeCall(IERC20Minimal.transfer, (to, amount)));
        }
    }

    /// A token call that accepts tokens returning nothing, and refuses a `false` return.
    function _call(address token, bytes memory data) private {
        require(token.code.length > 0, "token is not a contract");
        (bool ok, bytes memory ret) = token.call(data);
        require(ok && (ret.length == 0 || abi.decode(ret, (bool))), "token transfer failed");
    }
}
