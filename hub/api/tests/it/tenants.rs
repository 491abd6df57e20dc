//! Tenants at the API's edge: idempotency keys per tenant, random ids, the pending record
//! a crash leaves, partner grants, and the key routes (create, use, list, revoke, rotate,
//! expire) over a real server.

use super::*;

/// A bodiless call.
async fn call(s: &Server, method: reqwest::Method, path: &str, key: &str) -> (u16, Value) {
    send(s, method, path, key, None).await
}

async fn send(
    s: &Server,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .request(method, s.url(path))
        .bearer_auth(key);
    if let Some(b) = body {
        r = r.json(b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn same_idempotency_key_from_two_tenants_makes_two_operations() {
    let s = start().await;
    let body = transfer_body("10");
    let (st, a) = post(&s, "/v1/transfers", Some(CUSTOMER), Some("order-1"), &body).await;
    assert_eq!(st, 202, "{a}");
    let (st, b) = post(&s, "/v1/transfers", Some(OTHER), Some("order-1"), &body).await;
    assert_eq!(st, 202, "{b}");
    let (ida, idb) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    assert_ne!(ida, idb);
    assert_eq!(
        (a["tenant"].as_str(), b["tenant"].as_str()),
        (Some("default"), Some("other"))
    );
    assert_eq!(s.backend.creates.load(Ordering::SeqCst), 2);
    // ids are random: 128 bits in hex after the kind's prefix
    for id in [ida, idb] {
        let hexpart = id.strip_prefix("tr_").unwrap();
        assert_eq!(hexpart.len(), 32, "{id}");
        assert!(hexpart.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    // each replays its own, and reads only its own
    let (_, again) = post(&s, "/v1/transfers", Some(OTHER), Some("order-1"), &body).await;
    assert_eq!(again, b);
    let (st, _) = get(&s, &format!("/v1/transfers/{ida}"), Some(OTHER)).await;
    assert_eq!(st, 404);
    let (st, _) = get(&s, &format!("/v1/transfers/{idb}"), Some(OTHER)).await;
    assert_eq!(st, 200);
    let (_, page) = get(&s, "/v1/transfers", Some(OTHER)).await;
    let items: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(items, vec![idb]);
    assert_eq!(s.backend.creates.load(Ordering::SeqCst), 2);
    s.stop().await;
}

#[tokio::test]
async fn a_crash_after_recording_the_id_retries_into_the_same_operation() {
    let s = start().await;
    let body = transfer_body("4");
    let body_sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(serde_json::to_vec(&body).unwrap()))
    };
    // What a hub that stopped between "id recorded" and "operation made" leaves behind.
    s.bus
        .store()
        .put_idempotency(
            "default\u{0}transfer\u{0}crash-1",
            &isthmus_hub_api::store::IdempotencyRecord {
                body_sha256,
                status: 0,
                response: Value::Null,
                op_id: Some("tr_0123456789abcdef0123456789abcdef".into()),
            },
        )
        .unwrap();
    let (st, v) = post(&s, "/v1/transfers", Some(CUSTOMER), Some("crash-1"), &body).await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["id"], "tr_0123456789abcdef0123456789abcdef");
    // a different body under that key is still a conflict
    let (st, _) = post(
        &s,
        "/v1/transfers",
        Some(CUSTOMER),
        Some("crash-1"),
        &transfer_body("5"),
    )
    .await;
    assert_eq!(st, 409);
    s.stop().await;
}

#[tokio::test]
async fn a_forbidden_create_changes_nothing_and_frees_the_key() {
    let s = start().await;
    let mut body = transfer_body("4");
    body["source"]["from"] = json!("someone-elses");
    let (st, v) = post(&s, "/v1/transfers", Some(CUSTOMER), Some("f-1"), &body).await;
    assert_eq!(st, 403, "{v}");
    assert_error_shape(&v, "forbidden");
    assert_eq!(s.backend.creates.load(Ordering::SeqCst), 0);
    let (_, page) = get(&s, "/v1/transfers", Some(CUSTOMER)).await;
    assert!(page["items"].as_array().unwrap().is_empty());
    // the key was not spent on the refusal
    let (st, v) = post(
        &s,
        "/v1/transfers",
        Some(CUSTOMER),
        Some("f-1"),
        &transfer_body("4"),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn partners_read_only_the_tenants_that_granted_them() {
    let s = start().await;
    let (_, mine) = post(
        &s,
        "/v1/transfers",
        Some(CUSTOMER),
        Some("g-1"),
        &transfer_body("1"),
    )
    .await;
    let (_, theirs) = post(
        &s,
        "/v1/transfers",
        Some(OTHER),
        Some("g-1"),
        &transfer_body("1"),
    )
    .await;
    let (mine, theirs) = (mine["id"].as_str().unwrap(), theirs["id"].as_str().unwrap());
    let visible = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // no grant yet: the partner sees nothing
    let (st, _) = get(&s, &format!("/v1/transfers/{mine}"), Some(PARTNER)).await;
    assert_eq!(st, 404);
    let (_, page) = get(&s, "/v1/transfers", Some(PARTNER)).await;
    assert!(visible(&page).is_empty());
    // a partner cannot grant itself another tenant's data, nor can the other tenant's
    // grant reach this tenant's objects
    let (st, _) = call(&s, reqwest::Method::PUT, "/v1/grants/audit", PARTNER).await;
    assert_eq!(st, 403);
    let (st, v) = call(&s, reqwest::Method::PUT, "/v1/grants/audit", CUSTOMER).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v, json!({"tenant": "default", "partners": ["audit"]}));
    let (st, v) = get(&s, &format!("/v1/transfers/{mine}"), Some(PARTNER)).await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = get(&s, &format!("/v1/transfers/{theirs}"), Some(PARTNER)).await;
    assert_eq!(st, 404);
    let (_, page) = get(&s, "/v1/transfers", Some(PARTNER)).await;
    assert_eq!(visible(&page), vec![mine.to_owned()]);
    // the partner reads, it never writes
    let (st, _) = post(
        &s,
        "/v1/transfers",
        Some(PARTNER),
        Some("p-1"),
        &transfer_body("1"),
    )
    .await;
    assert_eq!(st, 403);
    // withdrawn: gone again at once
    let (st, _) = call(&s, reqwest::Method::DELETE, "/v1/grants/audit", CUSTOMER).await;
    assert_eq!(st, 200);
    let (st, _) = get(&s, &format!("/v1/transfers/{mine}"), Some(PARTNER)).await;
    assert_eq!(st, 404);
    s.stop().await;
}

fn key_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn admins_create_revoke_and_rotate_keys_and_others_change_nothing() {
    let s = start().await;
    let create = json!({"tenant": "acme", "role": "customer", "name": "ci"});
    // only admins touch keys; a refusal changes nothing
    for key in [CUSTOMER, PARTNER, OTHER] {
        let (st, v) = send(&s, reqwest::Method::POST, "/v1/keys", key, Some(&create)).await;
        assert_eq!(st, 403, "{v}");
        let (st, _) = call(&s, reqwest::Method::GET, "/v1/keys", key).await;
        assert_eq!(st, 403);
    }
    let (_, list) = call(&s, reqwest::Method::GET, "/v1/keys", ADMIN).await;
    assert!(key_ids(&list).is_empty());

    let (st, made) = send(&s, reqwest::Method::POST, "/v1/keys", ADMIN, Some(&create)).await;
    assert_eq!(st, 201, "{made}");
    let key = made["key"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("isk_") && key.len() == 68, "{key}");
    assert_eq!(
        (made["tenant"].as_str(), made["role"].as_str()),
        (Some("acme"), Some("customer"))
    );
    // the key works, as tenant acme
    let (st, v) = post(
        &s,
        "/v1/transfers",
        Some(&key),
        Some("k-1"),
        &transfer_body("1"),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["tenant"], "acme");
    let acme_op = v["id"].as_str().unwrap().to_owned();
    // listed without the key or its digest
    let (_, list) = call(&s, reqwest::Method::GET, "/v1/keys", ADMIN).await;
    assert_eq!(key_ids(&list), vec![id.clone()]);
    assert_eq!(list[0]["status"], "active");
    let text = list.to_string();
    assert!(!text.contains(&key) && !text.contains("sha256"), "{text}");

    // non-admins cannot revoke or rotate it: it keeps working
    for key2 in [CUSTOMER, key.as_str()] {
        let (st, _) = call(&s, reqwest::Method::DELETE, &format!("/v1/keys/{id}"), key2).await;
        assert_eq!(st, 403);
        let (st, _) = call(
            &s,
            reqwest::Method::POST,
            &format!("/v1/keys/{id}/rotate"),
            key2,
        )
        .await;
        assert_eq!(st, 403);
    }
    let (st, _) = get(&s, &format!("/v1/transfers/{acme_op}"), Some(&key)).await;
    assert_eq!(st, 200);

    // rotate: the new key works at once, the old one is refused at once
    let (st, rotated) = call(
        &s,
        reqwest::Method::POST,
        &format!("/v1/keys/{id}/rotate"),
        ADMIN,
    )
    .await;
    assert_eq!(st, 201, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    let new_id = rotated["id"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    assert_eq!(rotated["tenant"], "acme");
    let (st, v) = get(&s, &format!("/v1/transfers/{acme_op}"), Some(&key)).await;
    assert_eq!(st, 401, "{v}");
    assert_error_shape(&v, "unauthenticated");
    let (st, _) = get(&s, &format!("/v1/transfers/{acme_op}"), Some(&new_key)).await;
    assert_eq!(st, 200);
    // a revoked key cannot be rotated back to life
    let (st, _) = call(
        &s,
        reqwest::Method::POST,
        &format!("/v1/keys/{id}/rotate"),
        ADMIN,
    )
    .await;
    assert_eq!(st, 409);

    // revoke: refused from the next request
    let (st, v) = call(
        &s,
        reqwest::Method::DELETE,
        &format!("/v1/keys/{new_id}"),
        ADMIN,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "revoked");
    let (st, _) = get(&s, "/v1/transfers", Some(&new_key)).await;
    assert_eq!(st, 401);
    let (st, _) = call(&s, reqwest::Method::DELETE, "/v1/keys/key_nope", ADMIN).await;
    assert_eq!(st, 404);

    // invalid requests list every problem and make nothing
    let (st, v) = send(
        &s,
        reqwest::Method::POST,
        "/v1/keys",
        ADMIN,
        Some(&json!({"tenant": "Bad Tenant", "role": "customer", "expires_at": 1})),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(v["details"].as_array().unwrap().len(), 2, "{v}");
    let (_, list) = call(&s, reqwest::Method::GET, "/v1/keys", ADMIN).await;
    assert_eq!(key_ids(&list).len(), 2);
    s.stop().await;
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let s = start().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (st, made) = send(
        &s,
        reqwest::Method::POST,
        "/v1/keys",
        ADMIN,
        Some(&json!({"tenant": "acme", "role": "customer", "expires_at": now + 2})),
    )
    .await;
    assert_eq!(st, 201, "{made}");
    let key = made["key"].as_str().unwrap();
    let (st, _) = get(&s, "/v1/transfers", Some(key)).await;
    assert_eq!(st, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (st, _) = get(&s, "/v1/transfers", Some(key)).await;
        if st == 401 {
            break;
        }
        assert_eq!(st, 200);
        assert!(tokio::time::Instant::now() < deadline, "key never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, list) = call(&s, reqwest::Method::GET, "/v1/keys", ADMIN).await;
    assert_eq!(list[0]["status"], "expired");
    s.stop().await;
}
