//! Out-of-process adapters registered with a running hub over HTTP: transfers through a
//! registered adapter, retirement, and a lying adapter's evidence refused. The adapter
//! host's fixtures are the remote adapter package's own, included by path.

#[allow(dead_code)]
#[path = "../../../adapters/remote/tests/it/host.rs"]
mod host;
mod hub;
#[path = "../../../adapters/remote/tests/it/liar.rs"]
mod liar;
#[path = "../../../adapters/remote/tests/it/pyhost.rs"]
mod pyhost;
mod python;
mod registry;
