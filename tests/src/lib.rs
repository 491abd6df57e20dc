//! End-to-end tests of the cross-chain flows the hub must carry through its HTTP API, run
//! against real foreign nodes (litecoind in regtest, anvil) that the tests start on free
//! loopback ports and kill by pid. The library itself is empty: everything lives in
//! `tests/it`. It must never hold product code, and never talk to anything outside
//! 127.0.0.0/8.
