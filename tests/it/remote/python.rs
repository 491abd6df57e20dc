//! A provider registers the Python example adapter with a running hub over HTTP: the
//! registration route is language-neutral.

use super::hub::{boot, CUSTOMER, PROVIDER};
use super::pyhost::start_python;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_registers_the_python_adapter_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let hub = boot(dir.path()).await;
    let py = start_python(74).await;
    let body = json!({"network_id": 74, "name": "pyledger", "endpoint": py.listen.to_string(),
                      "identity": py.identity.to_string()});
    let (st, v) = hub.call("POST", "/v1/adapters", PROVIDER, Some(body)).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["healthy"], true);
    let (_, platforms) = hub.call("GET", "/v1/platforms", CUSTOMER, None).await;
    let p = platforms
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pyledger")
        .unwrap_or_else(|| panic!("{platforms}"));
    assert_eq!(p["kind"], "external");
    assert_eq!(p["capabilities"]["two_phase"], "unsupported");
    let (st, _) = hub
        .call("DELETE", "/v1/adapters/pyledger", PROVIDER, None)
        .await;
    assert_eq!(st, 200);
    hub.shutdown().await;
}
