//! The API's hardening over a real socket: 405 with `Allow`, per-key rate limits, CORS,
//! WebSocket limits and grouped ack flushes.

use super::*;

async fn raw(s: &Server, method: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            s.url(path),
        )
        .bearer_auth(CUSTOMER)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn wrong_method_answers_405_with_allow_and_unknown_path_404() {
    let s = start().await;
    for (method, path, allow) in [
        ("POST", "/v1/health", "GET"),
        ("DELETE", "/v1/transfers", "GET, POST"),
        ("PUT", "/v1/swaps/sw_1", "GET"),
        ("GET", "/v1/grants/audit", "PUT, DELETE"),
        ("GET", "/v1/keys/key_1/rotate", "POST"),
        ("PATCH", "/v1/adapters", "GET, POST"),
    ] {
        let resp = raw(&s, method, path).await;
        assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
        assert_eq!(
            resp.headers()["allow"].to_str().unwrap(),
            allow,
            "{method} {path}"
        );
        let v: Value = resp.json().await.unwrap();
        assert_error_shape(&v, "method_not_allowed");
    }
    for (method, path) in [("GET", "/v1/nowhere"), ("POST", "/v1/transfers/a/b")] {
        let resp = raw(&s, method, path).await;
        assert_eq!(resp.status().as_u16(), 404, "{method} {path}");
        assert!(resp.headers().get("allow").is_none());
        let v: Value = resp.json().await.unwrap();
        assert_error_shape(&v, "not_found");
    }
    // A supported method is still served.
    assert_eq!(raw(&s, "GET", "/v1/health").await.status().as_u16(), 200);
    s.stop().await;
}

fn limited(per_second: u32, burst: u32) -> ApiSettings {
    ApiSettings {
        rate_limit: RateLimit { per_second, burst },
        ..ApiSettings::default()
    }
}

#[tokio::test]
async fn a_burst_over_the_limit_gets_429_per_key_and_recovers() {
    let s = start_with(limited(1, 3)).await;
    // The burst is served; the bucket refills one a second, so a slow machine may get one
    // more through, never many.
    let mut served = 0;
    loop {
        let (st, _) = get(&s, "/v1/platforms", Some(CUSTOMER)).await;
        if st == 429 {
            break;
        }
        assert_eq!(st, 200);
        served += 1;
        assert!(served <= 6, "the limit never refused");
    }
    assert!(served >= 3, "only {served} of the burst of 3 served");
    // Over the limit: a POST creates nothing.
    let resp = reqwest::Client::new()
        .post(s.url("/v1/transfers"))
        .bearer_auth(CUSTOMER)
        .header("Idempotency-Key", "limited-1")
        .json(&transfer_body("10"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
    let v: Value = resp.json().await.unwrap();
    assert_error_shape(&v, "rate_limited");
    assert_eq!(s.backend.creates.load(Ordering::SeqCst), 0);

    // Another key has its own bucket.
    let (st, _) = get(&s, "/v1/platforms", Some(OTHER)).await;
    assert_eq!(st, 200);

    // After the advertised wait the key works again, and the refused write can be made.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let (st, v) = post(
        &s,
        "/v1/transfers",
        Some(CUSTOMER),
        Some("limited-1"),
        &transfer_body("10"),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(s.backend.creates.load(Ordering::SeqCst), 1);
    s.stop().await;
}

#[tokio::test]
async fn unauthenticated_requests_are_limited_per_ip_and_zero_disables() {
    let s = start_with(limited(1, 2)).await;
    let codes: Vec<u16> =
        futures::future::join_all((0..4).map(|_| async { get(&s, "/v1/health", None).await.0 }))
            .await;
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 2, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 2, "{codes:?}");
    // An unknown key is no way around the IP's bucket.
    let (st, _) = get(&s, "/v1/health", Some("made-up-key")).await;
    assert_eq!(st, 429);
    // A valid key has its own bucket.
    let (st, _) = get(&s, "/v1/health", Some(CUSTOMER)).await;
    assert_eq!(st, 200);
    s.stop().await;

    let s = start_with(limited(0, 0)).await;
    for _ in 0..300 {
        assert_eq!(get(&s, "/v1/health", Some(CUSTOMER)).await.0, 200);
    }
    s.stop().await;
}

fn with_cors(origins: &[&str]) -> ApiSettings {
    ApiSettings {
        cors: CorsSettings {
            origins: origins.iter().map(|o| o.to_string()).collect(),
            ..CorsSettings::default()
        },
        ..ApiSettings::default()
    }
}

async fn preflight(s: &Server, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, s.url("/v1/transfers"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, idempotency-key, content-type",
        )
        .send()
        .await
        .unwrap()
}

async fn from_origin(s: &Server, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(s.url("/v1/platforms"))
        .header("Origin", origin)
        .header("X-Api-Key", CUSTOMER)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_answers_allowed_origins_and_refuses_others() {
    let app = "https://app.example";
    let s = start_with(with_cors(&[app])).await;
    let resp = preflight(&s, app).await;
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], app);
    let methods = h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in [
        "authorization",
        "idempotency-key",
        "content-type",
        "x-api-key",
    ] {
        assert!(allowed.contains(header), "{allowed}");
    }
    let resp = from_origin(&s, app).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], app);

    let evil = "https://evil.example";
    let resp = preflight(&s, evil).await;
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let resp = from_origin(&s, evil).await;
    assert_eq!(resp.status().as_u16(), 403);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let v: Value = resp.json().await.unwrap();
    assert_error_shape(&v, "forbidden");
    // Without an Origin it is no CORS request at all.
    assert_eq!(get(&s, "/v1/platforms", Some(CUSTOMER)).await.0, 200);
    s.stop().await;

    // The default: no CORS headers at all.
    let s = start().await;
    let resp = from_origin(&s, app).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    s.stop().await;

    // `*` answers any origin.
    let s = start_with(with_cors(&["*"])).await;
    let resp = from_origin(&s, evil).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_some());
    s.stop().await;
}

#[tokio::test]
async fn settings_that_do_not_validate_are_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledApiStore::open(sled::open(dir.path()).unwrap()).unwrap());
    let bus = EventBus::new(store);
    let backend = Arc::new(MemBackend::default());
    let state = ApiState::new(
        Backends::new(backend.clone(), backend),
        KeyRing::new(&[]).unwrap(),
        bus,
    );
    let mut bad = with_cors(&["*"]);
    bad.cors.credentials = true;
    bad.rate_limit = RateLimit {
        per_second: 10,
        burst: 0,
    };
    let err = serve_with("127.0.0.1:0".parse().unwrap(), state, bad, async {})
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("2 problem(s)"), "{msg}");
    assert!(
        msg.contains("credentials") && msg.contains("burst"),
        "{msg}"
    );
}

fn publish(s: &Server, n: usize) {
    for i in 0..n {
        s.bus
            .publish_for(
                Some(DEFAULT_TENANT),
                "transfer.updated",
                &format!("t{i}"),
                vec![],
                json!({"i": i}),
            )
            .unwrap();
    }
}

#[tokio::test]
async fn an_oversized_frame_closes_the_event_stream_with_a_reason() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;
    let s = start().await;
    let mut ws = ws_connect(&s, "subscription=big").await;
    let limit = WsSettings::default().max_frame;
    // Within the limit, a bad message is answered and the stream stays open.
    ws.send(Message::text("x".repeat(1000))).await.unwrap();
    let v = next_event(&mut ws).await;
    assert_error_shape(&v, "invalid_request");
    let _ = ws.send(Message::text("x".repeat(limit + 1))).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let frame = loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("closed within the deadline")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let frame = frame.expect("a close frame with a code and reason");
    assert_eq!(frame.code, CloseCode::Size);
    assert!(
        frame.reason.contains(&limit.to_string()),
        "{}",
        frame.reason
    );
    s.stop().await;
}

#[tokio::test]
async fn grouped_acks_are_durable_after_the_window_and_on_close_across_a_restart() {
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let settings = ApiSettings {
        ws: WsSettings {
            ack_flush_batch: 1000,
            ack_flush_interval: Duration::from_millis(100),
            ..WsSettings::default()
        },
        ..ApiSettings::default()
    };
    let s = start_at_with(dir.path(), settings.clone()).await;
    publish(&s, 6);
    let mut ws = ws_connect(&s, "subscription=grp&from=1").await;
    for seq in 1..=3u64 {
        assert_eq!(next_event(&mut ws).await["seq"], seq);
        ws.send(Message::text(json!({ "ack": seq }).to_string()))
            .await
            .unwrap();
    }
    // Flushed within the window although the batch is far from full.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.bus.store().get_cursor("default/grp").unwrap() != Some(3) {
        assert!(tokio::time::Instant::now() < deadline, "acks not flushed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The last ack before a close is flushed on close.
    for seq in 4..=5u64 {
        assert_eq!(next_event(&mut ws).await["seq"], seq);
        ws.send(Message::text(json!({ "ack": seq }).to_string()))
            .await
            .unwrap();
    }
    ws.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.bus.store().get_cursor("default/grp").unwrap() != Some(5) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ack not flushed on close"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;

    // A restarted hub resumes the subscription after the last acked event.
    let s = start_at_with(dir.path(), settings).await;
    let mut ws = ws_connect(&s, "subscription=grp").await;
    assert_eq!(next_event(&mut ws).await["seq"], 6);
    s.stop().await;
}

#[tokio::test]
async fn tls_serves_https_with_a_trusted_cert_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("api.crt");
    let key_path = dir.path().join("api.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let s = start_with(ApiSettings {
        tls: Some(ApiTls {
            cert: cert_path,
            key: key_path,
        }),
        ..ApiSettings::default()
    })
    .await;
    let port = s.addr.port();
    let trusted = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", s.addr)
        .build()
        .unwrap();
    let resp = trusted
        .get(format!("https://localhost:{port}/v1/platforms"))
        .header("X-Api-Key", CUSTOMER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v[0]["name"], "alpha");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v1/health"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    // A client that does not trust the certificate is refused by the handshake.
    let untrusting = reqwest::Client::builder()
        .use_rustls_tls()
        .resolve("localhost", s.addr)
        .build()
        .unwrap();
    let refused = untrusting
        .get(format!("https://localhost:{port}/v1/health"))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_tls_key_that_is_not_pem_is_refused_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("api.crt");
    let key = dir.path().join("api.key");
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let store = Arc::new(SledApiStore::open(sled::open(dir.path().join("db")).unwrap()).unwrap());
    let backend = Arc::new(MemBackend::default());
    let state = ApiState::new(
        Backends::new(backend.clone(), backend),
        KeyRing::new(&[]).unwrap(),
        EventBus::new(store),
    );
    let settings = ApiSettings {
        tls: Some(ApiTls { cert, key }),
        ..ApiSettings::default()
    };
    let refused = serve_with("127.0.0.1:0".parse().unwrap(), state, settings, async {});
    assert!(refused.is_err());
}

/// The table behind 405 and `Allow` names exactly the methods the OpenAPI document gives
/// each path (which `openapi_documents_exactly_the_served_paths` ties to the routes), so a
/// route added without its entry fails here.
#[test]
fn allow_table_agrees_with_the_openapi_document() {
    let doc = isthmus_hub_api::openapi::document();
    let paths = doc["paths"].as_object().unwrap();
    assert!(!paths.is_empty());
    for (path, item) in paths {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "some-id" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let mut documented: Vec<String> = item
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| ["get", "post", "put", "delete", "patch"].contains(&k.as_str()))
            .map(|k| k.to_ascii_uppercase())
            .collect();
        documented.sort();
        let mut allowed: Vec<String> = isthmus_hub_api::server::allowed_methods(&concrete)
            .unwrap_or_else(|| panic!("{path} is missing from the Allow table"))
            .iter()
            .map(|m| m.to_string())
            .collect();
        allowed.sort();
        assert_eq!(allowed, documented, "{path}");
    }
}
