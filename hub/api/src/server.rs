//! The warp routes. Path and method matching is warp's; everything after that (auth,
//! roles, idempotency, validation) happens in plain async functions that always answer
//! with either a success body or the one error shape.

use crate::auth::{key_digest, valid_tenant, KeyRing, Principal, Role};
use crate::backend::{BackendError, Backends, OpId};
use crate::error::{ApiError, ErrorCode};
use crate::limit::{retry_after_secs, RateLimiter};
use crate::model::*;
use crate::settings::{ApiSettings, CorsSettings, WsSettings};
use crate::store::{Event, EventBus, IdempotencyRecord};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

/// Largest accepted request body.
pub const MAX_BODY: u64 = 256 * 1024;
/// Longest `?wait=` honoured, in seconds.
pub const MAX_WAIT_SECS: u64 = 60;
/// Largest page.
pub const MAX_PAGE: usize = 200;

/// Everything the routes share.
pub struct ApiState {
    pub backends: Backends,
    pub keys: KeyRing,
    pub bus: EventBus,
    inflight: Mutex<HashSet<String>>,
}

impl ApiState {
    pub fn new(backends: Backends, keys: KeyRing, bus: EventBus) -> Arc<Self> {
        Arc::new(ApiState {
            backends,
            keys,
            bus,
            inflight: Mutex::new(HashSet::new()),
        })
    }
}

type Query = HashMap<String, String>;

fn json_reply<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

fn error_reply(e: &ApiError) -> Response {
    json_reply(e.status(), e)
}

fn respond(r: Result<Response, ApiError>) -> Result<Response, Infallible> {
    Ok(r.unwrap_or_else(|e| error_reply(&e)))
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Rejected { message, details } => {
                ApiError::new(ErrorCode::InvalidRequest, message).with_details(details)
            }
            BackendError::NotFound(what) => {
                ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
            }
            BackendError::Conflict { message, details } => {
                ApiError::new(ErrorCode::Conflict, message).with_details(details)
            }
            BackendError::Forbidden(why) => ApiError::new(ErrorCode::Forbidden, why),
            BackendError::Unavailable(why) => ApiError::new(ErrorCode::Unavailable, why),
            BackendError::Internal(cause) => ApiError::internal(&cause),
        }
    }
}

pub(crate) struct Headers {
    authorization: Option<String>,
    api_key: Option<String>,
    idempotency_key: Option<String>,
}

pub(crate) fn headers() -> impl Filter<Extract = (Headers,), Error = Infallible> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>("x-api-key"))
        .and(warp::header::optional::<String>("idempotency-key"))
        .map(|authorization, api_key, idempotency_key| Headers {
            authorization,
            api_key,
            idempotency_key,
        })
        .or(warp::any().map(|| Headers {
            authorization: None,
            api_key: None,
            idempotency_key: None,
        }))
        .unify()
}

/// A request body of at most [`MAX_BODY`] bytes.
pub(crate) fn body() -> impl Filter<Extract = (Bytes,), Error = warp::Rejection> + Clone {
    warp::body::content_length_limit(MAX_BODY).and(warp::body::bytes())
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The caller: a configured key, or a key made at run time that is neither revoked nor
/// expired (looked up on every request, so a revocation holds from the next one).
pub(crate) fn authenticate(st: &ApiState, h: &Headers) -> Result<Principal, ApiError> {
    let presented = KeyRing::presented(h.authorization.as_deref(), h.api_key.as_deref())?;
    let digest = key_digest(presented);
    if let Some(p) = st.keys.lookup(&digest) {
        return Ok(p);
    }
    match st
        .bus
        .store()
        .key_by_digest(&digest)
        .map_err(|e| ApiError::internal(&e))?
    {
        Some(rec) if rec.usable(unix_now()) => Ok(Principal {
            name: rec.name,
            role: rec.role,
            tenant: rec.tenant,
        }),
        Some(rec) => Err(ApiError::new(
            ErrorCode::Unauthenticated,
            format!("api key `{}` is revoked or expired", rec.id),
        )),
        None => Err(ApiError::new(ErrorCode::Unauthenticated, "unknown api key")),
    }
}

/// The tenants whose objects `who` may read: its own, and for a partner also those that
/// granted its tenant access.
fn readable(st: &ApiState, who: &Principal) -> Result<Vec<String>, ApiError> {
    let mut out = vec![who.tenant.clone()];
    if who.role == Role::Partner {
        out.extend(
            st.bus
                .store()
                .grantors(&who.tenant)
                .map_err(|e| ApiError::internal(&e))?,
        );
    }
    Ok(out)
}

/// All routes under `/v1` with the default [`ApiSettings`], errors mapped to the API's
/// error shape.
pub fn routes(st: Arc<ApiState>) -> BoxedFilter<(Response,)> {
    routes_with(st, &ApiSettings::default())
}

/// All routes under `/v1` behind the rate limit and CORS of `settings`, errors mapped to
/// the API's error shape. TLS is the server's business ([`crate::serve_with`]).
pub fn routes_with(st: Arc<ApiState>, settings: &ApiSettings) -> BoxedFilter<(Response,)> {
    let ws_settings = settings.ws;
    let with = {
        let st = st.clone();
        warp::any().map(move || st.clone())
    };
    let query = warp::query::<Query>()
        .or(warp::any().map(Query::new))
        .unify();

    let health = warp::path!("v1" / "health")
        .and(warp::get())
        .and(with.clone())
        .map(|st: Arc<ApiState>| {
            json_reply(
                StatusCode::OK,
                &serde_json::json!({
                    "status": "ok",
                    "version": env!("CARGO_PKG_VERSION"),
                    "last_event_seq": st.bus.store().last_seq(),
                }),
            )
        });

    let openapi = warp::path!("v1" / "openapi.json")
        .and(warp::get())
        .map(|| json_reply(StatusCode::OK, &crate::openapi::document()));

    let listing = |segment: &'static str| {
        warp::path("v1")
            .and(warp::path(segment))
            .and(warp::path::end())
            .and(warp::get())
            .and(with.clone())
            .and(headers())
            .and_then(move |st: Arc<ApiState>, h: Headers| async move {
                respond(
                    async {
                        authenticate(&st, &h)?;
                        let body = if segment == "platforms" {
                            serde_json::to_value(st.backends.directory.platforms().await?)
                        } else {
                            serde_json::to_value(st.backends.directory.networks().await?)
                        }
                        .map_err(|e| ApiError::internal(&e))?;
                        Ok(json_reply(StatusCode::OK, &body))
                    }
                    .await,
                )
            })
    };
    let platforms = listing("platforms");
    let networks = listing("networks");

    let ops = |segment: &'static str, kind: OpKind| {
        let create = warp::path("v1")
            .and(warp::path(segment))
            .and(warp::path::end())
            .and(warp::post())
            .and(with.clone())
            .and(headers())
            .and(body())
            .and_then(
                move |st: Arc<ApiState>, h: Headers, body: Bytes| async move {
                    respond(create_op(&st, kind, &h, body).await)
                },
            );
        let get = warp::path("v1")
            .and(warp::path(segment))
            .and(warp::path::param::<String>())
            .and(warp::path::end())
            .and(warp::get())
            .and(with.clone())
            .and(headers())
            .and(query)
            .and_then(
                move |id: String, st: Arc<ApiState>, h: Headers, q: Query| async move {
                    respond(get_op(&st, kind, &id, &h, &q).await)
                },
            );
        let list = warp::path("v1")
            .and(warp::path(segment))
            .and(warp::path::end())
            .and(warp::get())
            .and(with.clone())
            .and(headers())
            .and(query)
            .and_then(move |st: Arc<ApiState>, h: Headers, q: Query| async move {
                respond(list_ops(&st, kind, &h, &q).await)
            });
        create.or(get).unify().or(list).unify()
    };

    let adapters = {
        let register = warp::path!("v1" / "adapters")
            .and(warp::post())
            .and(with.clone())
            .and(headers())
            .and(body())
            .and_then(|st: Arc<ApiState>, h: Headers, body: Bytes| async move {
                respond(register_adapter(&st, &h, body).await)
            });
        let list = warp::path!("v1" / "adapters")
            .and(warp::get())
            .and(with.clone())
            .and(headers())
            .and_then(|st: Arc<ApiState>, h: Headers| async move {
                respond(list_adapters(&st, &h).await)
            });
        let retire = warp::path!("v1" / "adapters" / String)
            .and(warp::delete())
            .and(with.clone())
            .and(headers())
            .and_then(|id: String, st: Arc<ApiState>, h: Headers| async move {
                respond(retire_adapter(&st, &h, &id).await)
            });
        register.or(list).unify().or(retire).unify()
    };

    let keys = crate::keys::routes(with.clone());
    let provisioned = crate::networks::routes(with.clone());
    let grants = {
        let list = warp::path!("v1" / "grants")
            .and(warp::get())
            .and(with.clone())
            .and(headers())
            .and_then(|st: Arc<ApiState>, h: Headers| async move {
                respond(list_grants(&st, &h).await)
            });
        let put = warp::path!("v1" / "grants" / String)
            .and(warp::put())
            .and(with.clone())
            .and(headers())
            .and_then(
                |partner: String, st: Arc<ApiState>, h: Headers| async move {
                    respond(change_grant(&st, &h, &partner, true).await)
                },
            );
        let delete = warp::path!("v1" / "grants" / String)
            .and(warp::delete())
            .and(with.clone())
            .and(headers())
            .and_then(
                |partner: String, st: Arc<ApiState>, h: Headers| async move {
                    respond(change_grant(&st, &h, &partner, false).await)
                },
            );
        list.or(put).unify().or(delete).unify()
    };

    let events =
        warp::path!("v1" / "events")
            .and(warp::get())
            .and(warp::ws())
            .and(with.clone())
            .and(headers())
            .and(query)
            .map(
                move |ws: warp::ws::Ws, st: Arc<ApiState>, h: Headers, q: Query| {
                    match open_event_stream(&st, &h, &q) {
                        Ok(sub) => ws
                            .max_frame_size(ws_settings.max_frame)
                            .max_message_size(ws_settings.max_message)
                            .on_upgrade(move |socket| stream_events(st, sub, ws_settings, socket))
                            .into_response(),
                        Err(e) => error_reply(&e),
                    }
                },
            );

    // Each group is boxed before they are joined: the joined type stays shallow, which
    // keeps compile times sane.
    let api = health
        .boxed()
        .or(openapi.boxed())
        .unify()
        .or(platforms.boxed())
        .unify()
        .or(networks.boxed())
        .unify()
        .or(ops("transfers", OpKind::Transfer).boxed())
        .unify()
        .or(ops("swaps", OpKind::Swap).boxed())
        .unify()
        .or(ops("messages", OpKind::Message).boxed())
        .unify()
        .or(adapters.boxed())
        .unify()
        .or(keys.boxed())
        .unify()
        .or(provisioned.boxed())
        .unify()
        .or(grants.boxed())
        .unify()
        .or(events.boxed())
        .unify()
        .or(wrong_method().boxed())
        .unify()
        .boxed();
    let limiter = Arc::new(RateLimiter::new(settings.rate_limit));
    // The limit comes before any route, so a refused request changes nothing.
    let served = rate_limited(st, limiter).and(api).recover(recover).unify();
    if !settings.cors.enabled() {
        return served.boxed();
    }
    // CORS wraps the error answers too (a browser must be able to read a 429), and answers
    // preflights itself; a refused origin is the one rejection left for the outer recover.
    served
        .with(cors(&settings.cors))
        .map(Reply::into_response)
        .recover(recover)
        .unify()
        .boxed()
}

fn cors(c: &CorsSettings) -> warp::cors::Builder {
    let b = warp::cors()
        .allow_methods(c.methods.iter().map(String::as_str))
        .allow_headers(c.headers.iter().map(String::as_str))
        .allow_credentials(c.credentials)
        .max_age(c.max_age);
    if c.any_origin() {
        b.allow_any_origin()
    } else {
        b.allow_origins(c.origins.iter().map(String::as_str))
    }
}

/// A request over its caller's rate limit.
#[derive(Debug)]
struct RateLimited {
    retry_after_secs: u64,
}

impl warp::reject::Reject for RateLimited {}

/// Takes one token from the caller's bucket: the key's when it presents a valid one, else
/// its IP's (so unknown keys cannot mint fresh buckets).
fn rate_limited(
    st: Arc<ApiState>,
    limiter: Arc<RateLimiter>,
) -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::addr::remote()
        .and(headers())
        .and_then(move |addr: Option<std::net::SocketAddr>, h: Headers| {
            let st = st.clone();
            let limiter = limiter.clone();
            async move {
                if !limiter.enabled() {
                    return Ok(());
                }
                let key = KeyRing::presented(h.authorization.as_deref(), h.api_key.as_deref())
                    .ok()
                    .filter(|_| authenticate(&st, &h).is_ok())
                    .map(|k| format!("key:{}", hex::encode(key_digest(k))));
                let who = key.unwrap_or_else(|| match addr {
                    Some(a) => format!("ip:{}", a.ip()),
                    None => "ip:unknown".to_owned(),
                });
                limiter
                    .take(&who, std::time::Instant::now())
                    .map_err(|wait| {
                        warp::reject::custom(RateLimited {
                            retry_after_secs: retry_after_secs(wait),
                        })
                    })
            }
        })
        .untuple_one()
}

/// The methods each path of the API answers, for `405` and its `Allow` header. `*` stands
/// for one non-empty segment (an id). Kept beside the routes above: a route missing here
/// only makes a wrong method answer 404 instead of 405.
const PATHS: &[(&[&str], &[&str])] = &[
    (&["v1", "health"], &["GET"]),
    (&["v1", "openapi.json"], &["GET"]),
    (&["v1", "platforms"], &["GET"]),
    (&["v1", "networks"], &["GET", "POST"]),
    (&["v1", "networks", "*"], &["GET", "DELETE"]),
    (&["v1", "transfers"], &["GET", "POST"]),
    (&["v1", "transfers", "*"], &["GET"]),
    (&["v1", "swaps"], &["GET", "POST"]),
    (&["v1", "swaps", "*"], &["GET"]),
    (&["v1", "messages"], &["GET", "POST"]),
    (&["v1", "messages", "*"], &["GET"]),
    (&["v1", "adapters"], &["GET", "POST"]),
    (&["v1", "adapters", "*"], &["DELETE"]),
    (&["v1", "keys"], &["GET", "POST"]),
    (&["v1", "keys", "*"], &["DELETE"]),
    (&["v1", "keys", "*", "rotate"], &["POST"]),
    (&["v1", "grants"], &["GET"]),
    (&["v1", "grants", "*"], &["PUT", "DELETE"]),
    (&["v1", "events"], &["GET"]),
];

/// The methods `path` answers, or `None` when no route has that path.
pub fn allowed_methods(path: &str) -> Option<&'static [&'static str]> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    PATHS
        .iter()
        .find(|(pattern, _)| {
            pattern.len() == segments.len()
                && pattern
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| if *p == "*" { !s.is_empty() } else { p == s })
        })
        .map(|(_, methods)| *methods)
}

/// Tried after every route: a known path asked with a method it does not answer gets `405`
/// with `Allow`; anything else stays a rejection (404 unless a route said more).
fn wrong_method() -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path::full().and(warp::method()).and_then(
        |path: warp::path::FullPath, method: warp::http::Method| async move {
            match allowed_methods(path.as_str()) {
                Some(allowed) if !allowed.contains(&method.as_str()) => {
                    let e = ApiError::new(
                        ErrorCode::MethodNotAllowed,
                        format!(
                            "{method} is not allowed on {}; allowed: {}",
                            path.as_str(),
                            allowed.join(", ")
                        ),
                    );
                    let mut r = error_reply(&e);
                    if let Ok(v) = warp::http::HeaderValue::from_str(&allowed.join(", ")) {
                        r.headers_mut().insert(warp::http::header::ALLOW, v);
                    }
                    Ok(r)
                }
                _ => Err(warp::reject::not_found()),
            }
        },
    )
}

async fn recover(r: warp::Rejection) -> Result<Response, Infallible> {
    let e = if r.is_not_found() {
        ApiError::new(
            ErrorCode::NotFound,
            "no such endpoint; see /v1/openapi.json",
        )
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds {MAX_BODY} bytes"),
        )
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            ErrorCode::MethodNotAllowed,
            "method not allowed on this path",
        )
    } else if let Some(limited) = r.find::<RateLimited>() {
        let e = ApiError::new(
            ErrorCode::RateLimited,
            format!(
                "rate limit exceeded; retry after {} s",
                limited.retry_after_secs
            ),
        );
        let mut resp = error_reply(&e);
        resp.headers_mut().insert(
            warp::http::header::RETRY_AFTER,
            warp::http::HeaderValue::from(limited.retry_after_secs),
        );
        return Ok(resp);
    } else if r.find::<warp::cors::CorsForbidden>().is_some() {
        ApiError::new(
            ErrorCode::Forbidden,
            "cross-origin request refused: origin, method or header not allowed",
        )
    } else if let Some(e) = r.find::<ApiError>() {
        e.clone()
    } else {
        ApiError::invalid(format!("request refused: {r:?}"))
    };
    Ok(error_reply(&e))
}

/// Removes the idempotency scope from the in-flight set when the request ends, whatever
/// way it ends.
struct InflightGuard<'a> {
    set: &'a Mutex<HashSet<String>>,
    scope: String,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.scope);
        }
    }
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("request body is not valid: {e}")))
}

async fn create_op(
    st: &ApiState,
    kind: OpKind,
    h: &Headers,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = authenticate(st, h)?;
    who.require(&[Role::Customer], &format!("create a {}", kind.as_str()))?;
    let key = h
        .idempotency_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::IdempotencyKeyRequired,
                "every write needs an `Idempotency-Key` header",
            )
        })?;
    if key.len() > 200 || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::invalid(
            "Idempotency-Key must be 1 to 200 printable ASCII characters",
        ));
    }
    // Keys are the tenant's: two tenants using the same key never meet.
    let scope = format!("{}\u{0}{}\u{0}{}", who.tenant, kind.as_str(), key);
    let body_sha256 = hex::encode(Sha256::digest(&body));
    {
        let mut set = st
            .inflight
            .lock()
            .map_err(|_| ApiError::internal(&"in-flight set poisoned"))?;
        if !set.insert(scope.clone()) {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!("a request with Idempotency-Key `{key}` is still being processed"),
            ));
        }
    }
    let _guard = InflightGuard {
        set: &st.inflight,
        scope: scope.clone(),
    };
    let store = st.bus.store();
    let pending = store
        .get_idempotency(&scope)
        .map_err(|e| ApiError::internal(&e))?;
    let reused = match pending {
        Some(rec) if rec.body_sha256 != body_sha256 => {
            return Err(ApiError::new(
                ErrorCode::IdempotencyConflict,
                format!("Idempotency-Key `{key}` was already used with a different body"),
            ));
        }
        Some(rec) if rec.status != 0 => {
            let status = StatusCode::from_u16(rec.status).unwrap_or(StatusCode::ACCEPTED);
            return Ok(json_reply(status, &rec.response));
        }
        // Recorded, then the hub stopped before answering: the same id again, which the
        // backend answers with the operation if it was made.
        Some(rec) => rec.op_id,
        None => None,
    };
    let req = parse_create(kind, &body)?;
    let id = match reused {
        Some(id) => OpId(id),
        None => {
            let id = OpId(new_op_id(kind));
            store
                .put_idempotency(
                    &scope,
                    &IdempotencyRecord {
                        body_sha256: body_sha256.clone(),
                        status: 0,
                        response: serde_json::Value::Null,
                        op_id: Some(id.0.clone()),
                    },
                )
                .map_err(|e| ApiError::internal(&e))?;
            id
        }
    };
    let created = match req {
        CreateReq::Transfer(req) => st.backends.operations.create_transfer(&id, &who, req).await,
        CreateReq::Swap(req) => st.backends.operations.create_swap(&id, &who, req).await,
        CreateReq::Message(req) => st.backends.messages.create_message(&id, &who, req).await,
    };
    let status = match created {
        Ok(s) => s,
        Err(e) => {
            // A refusal made nothing: the key is free again, as before the request.
            if matches!(
                e,
                BackendError::Rejected { .. }
                    | BackendError::NotFound(_)
                    | BackendError::Forbidden(_)
            ) {
                store
                    .delete_idempotency(&scope)
                    .map_err(|e| ApiError::internal(&e))?;
            }
            return Err(e.into());
        }
    };
    let response = serde_json::to_value(&status).map_err(|e| ApiError::internal(&e))?;
    store
        .put_idempotency(
            &scope,
            &IdempotencyRecord {
                body_sha256,
                status: StatusCode::ACCEPTED.as_u16(),
                response: response.clone(),
                op_id: Some(id.0.clone()),
            },
        )
        .map_err(|e| ApiError::internal(&e))?;
    tracing::info!(principal = %who.name, tenant = %who.tenant, kind = kind.as_str(), id = %status.id, "operation accepted");
    Ok(json_reply(StatusCode::ACCEPTED, &response))
}

/// A create request, parsed and checked for shape before anything is recorded.
enum CreateReq {
    Transfer(CreateTransfer),
    Swap(CreateSwap),
    Message(CreateMessage),
}

fn parse_create(kind: OpKind, body: &[u8]) -> Result<CreateReq, ApiError> {
    Ok(match kind {
        OpKind::Transfer => {
            let req: CreateTransfer = parse_body(body)?;
            invalid_if(req.validate())?;
            CreateReq::Transfer(req)
        }
        OpKind::Swap => {
            let req: CreateSwap = parse_body(body)?;
            invalid_if(req.validate())?;
            CreateReq::Swap(req)
        }
        OpKind::Message => {
            let req: CreateMessage = parse_body(body)?;
            invalid_if(req.validate())?;
            CreateReq::Message(req)
        }
    })
}

/// A fresh operation id: the kind's prefix and 128 bits from the OS's generator, so ids
/// cannot be guessed from anything a client knows.
fn new_op_id(kind: OpKind) -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let prefix = match kind {
        OpKind::Transfer => "tr",
        OpKind::Swap => "sw",
        OpKind::Message => "msg",
    };
    format!("{prefix}_{}", hex::encode(b))
}

async fn list_grants(st: &ApiState, h: &Headers) -> Result<Response, ApiError> {
    let who = authenticate(st, h)?;
    who.require(&[Role::Customer, Role::Admin], "read its tenant's grants")?;
    let partners = st
        .bus
        .store()
        .grants(&who.tenant)
        .map_err(|e| ApiError::internal(&e))?;
    Ok(json_reply(
        StatusCode::OK,
        &Grants {
            tenant: who.tenant,
            partners,
        },
    ))
}

/// Grant (or withdraw) read access to the caller's tenant to the partner tenant `partner`.
async fn change_grant(
    st: &ApiState,
    h: &Headers,
    partner: &str,
    grant: bool,
) -> Result<Response, ApiError> {
    let who = authenticate(st, h)?;
    who.require(&[Role::Customer, Role::Admin], "change its tenant's grants")?;
    if !valid_tenant(partner) {
        return Err(ApiError::invalid(format!(
            "partner tenant `{partner}` must be 1 to 64 of a-z, 0-9, `-`, `_`"
        )));
    }
    let store = st.bus.store();
    let mut partners = store
        .grants(&who.tenant)
        .map_err(|e| ApiError::internal(&e))?;
    partners.retain(|p| p != partner);
    if grant {
        partners.push(partner.to_owned());
    }
    store
        .put_grants(&who.tenant, &partners)
        .map_err(|e| ApiError::internal(&e))?;
    tracing::info!(tenant = %who.tenant, %partner, grant, "partner grant changed");
    list_grants(st, h).await
}

async fn register_adapter(st: &ApiState, h: &Headers, body: Bytes) -> Result<Response, ApiError> {
    let who = authenticate(st, h)?;
    who.require(&[Role::Provider], "register an adapter")?;
    let req: RegisterAdapter = parse_body(&body)?;
    invalid_if(req.validate())?;
    let info = st.backends.adapters.register_adapter(&who, req).await?;
    tracing::info!(principal = %who.name, adapter = %info.name, network = info.network_id, "adapter registered");
    Ok(json_reply(StatusCode::CREATED, &info))
}

async fn list_adapters(st: &ApiState, h: &Headers) -> Result<Response, ApiError> {
    authenticate(st, h)?;
    Ok(json_reply(
        StatusCode::OK,
        &st.backends.adapters.adapters().await?,
    ))
}

async fn retire_adapter(st: &ApiState, h: &Headers, id: &str) -> Result<Response, ApiError> {
    let who = authenticate(st, h)?;
    who.require(&[Role::Provider], "retire an adapter")?;
    let info = st.backends.adapters.retire_adapter(&who, id).await?;
    tracing::info!(principal = %who.name, tenant = %who.tenant, adapter = %id, "adapter retired");
    Ok(json_reply(StatusCode::OK, &info))
}

fn invalid_if(problems: Vec<String>) -> Result<(), ApiError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "request has {} problem(s): {}",
            problems.len(),
            problems.join("; ")
        ))
        .with_details(problems))
    }
}

fn parse_u64(q: &Query, name: &str) -> Result<Option<u64>, ApiError> {
    q.get(name)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::invalid(format!("query parameter `{name}`=`{v}` is not a number"))
            })
        })
        .transpose()
}

async fn get_op(
    st: &ApiState,
    kind: OpKind,
    id: &str,
    h: &Headers,
    q: &Query,
) -> Result<Response, ApiError> {
    let who = authenticate(st, h)?;
    let tenants = readable(st, &who)?;
    let wait = parse_u64(q, "wait")?.unwrap_or(0).min(MAX_WAIT_SECS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    // Subscribe before reading so an update between read and wait is not missed.
    let mut updates = st.bus.subscribe();
    loop {
        let op = match kind {
            OpKind::Message => st.backends.messages.get_message(id).await?,
            OpKind::Transfer | OpKind::Swap => {
                st.backends.operations.get_operation(kind, id).await?
            }
        }
        // Another tenant's operation reads exactly as a missing one.
        .filter(|op| tenants.contains(&op.tenant))
        .ok_or_else(|| ApiError::not_found(kind.as_str(), id))?;
        if op.terminal || tokio::time::Instant::now() >= deadline {
            return Ok(json_reply(StatusCode::OK, &op));
        }
        loop {
            match tokio::time::timeout_at(deadline, updates.recv()).await {
                Err(_) => break,
                Ok(Ok(ev)) if ev.subject == id => break,
                Ok(Ok(_)) => continue,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => break,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => break,
            }
        }
    }
}

async fn list_ops(
    st: &ApiState,
    kind: OpKind,
    h: &Headers,
    q: &Query,
) -> Result<Response, ApiError> {
    let who = authenticate(st, h)?;
    let tenants = readable(st, &who)?;
    let limit = parse_u64(q, "limit")?.unwrap_or(50) as usize;
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_PAGE}, got {limit}"
        )));
    }
    let after = q.get("after").map(String::as_str);
    let page = match kind {
        OpKind::Message => {
            st.backends
                .messages
                .list_messages(&tenants, after, limit)
                .await?
        }
        OpKind::Transfer | OpKind::Swap => {
            st.backends
                .operations
                .list_operations(kind, &tenants, after, limit)
                .await?
        }
    };
    Ok(json_reply(StatusCode::OK, &page))
}

/// A WebSocket subscription: where to start and which events to send.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub from: u64,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub subject: Option<String>,
    pub network: Option<String>,
    /// The tenants whose events the subscriber may see.
    pub tenants: Vec<String>,
    /// Whether it also sees hub-wide events (no tenant): providers and admins.
    pub hub_wide: bool,
}

impl Subscription {
    pub fn matches(&self, e: &Event) -> bool {
        let visible = match &e.tenant {
            Some(t) => self.tenants.contains(t),
            None => self.hub_wide,
        };
        let kind_ok = match self.kind.as_deref() {
            None => true,
            Some(k) => match k.strip_suffix('*') {
                Some(prefix) => e.kind.starts_with(prefix),
                None => e.kind == k,
            },
        };
        visible
            && kind_ok
            && self.subject.as_deref().is_none_or(|s| e.subject == s)
            && self
                .network
                .as_deref()
                .is_none_or(|n| e.networks.iter().any(|x| x == n))
    }
}

fn open_event_stream(st: &ApiState, h: &Headers, q: &Query) -> Result<Subscription, ApiError> {
    let who = authenticate(st, h)?;
    // A named cursor is the tenant's, like every other object.
    let name = q
        .get("subscription")
        .map(|n| format!("{}/{}", who.tenant, n));
    let from = match (parse_u64(q, "from")?, &name) {
        (Some(f), _) => f,
        (None, Some(n)) => match st
            .bus
            .store()
            .get_cursor(n)
            .map_err(|e| ApiError::internal(&e))?
        {
            Some(acked) => acked + 1,
            None => 1,
        },
        (None, None) => st.bus.store().last_seq() + 1,
    };
    Ok(Subscription {
        from,
        name,
        kind: q.get("kind").cloned(),
        subject: q.get("subject").cloned(),
        network: q.get("network").cloned(),
        tenants: readable(st, &who)?,
        hub_wide: matches!(who.role, Role::Provider | Role::Admin),
    })
}

const REPLAY_PAGE: usize = 256;

/// Acks of a named subscription not yet written: the latest, how many, and when they must
/// be flushed at the latest.
struct PendingAck {
    seq: u64,
    count: usize,
    due: tokio::time::Instant,
}

/// Write (and flush) the latest pending ack, if any.
fn flush_ack(st: &ApiState, name: Option<&String>, pending: &mut Option<PendingAck>) {
    if let (Some(p), Some(name)) = (pending.take(), name) {
        if let Err(e) = st.bus.store().put_cursor(name, p.seq) {
            tracing::error!(%e, "storing subscription cursor failed");
        }
    }
}

async fn stream_events(
    st: Arc<ApiState>,
    sub: Subscription,
    ws: WsSettings,
    socket: warp::ws::WebSocket,
) {
    let (mut tx, mut rx) = socket.split();
    let mut live = st.bus.subscribe();
    let mut next = sub.from.max(1);
    // Sends stored events from `next` up to the end of the log.
    async fn replay(
        st: &ApiState,
        sub: &Subscription,
        next: &mut u64,
        tx: &mut futures::stream::SplitSink<warp::ws::WebSocket, warp::ws::Message>,
    ) -> bool {
        loop {
            let batch = match st.bus.store().events_from(*next, REPLAY_PAGE) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(%e, "event replay failed");
                    return false;
                }
            };
            let n = batch.len();
            for e in batch {
                *next = e.seq + 1;
                if sub.matches(&e) {
                    let Ok(text) = serde_json::to_string(&e) else {
                        return false;
                    };
                    if tx.send(warp::ws::Message::text(text)).await.is_err() {
                        return false;
                    }
                }
            }
            if n < REPLAY_PAGE {
                return true;
            }
        }
    }
    if !replay(&st, &sub, &mut next, &mut tx).await {
        return;
    }
    // Acks are flushed in groups (see `WsSettings`): a crash loses at most the acks of the
    // last window, whose events a resumed subscription then receives again.
    let mut pending: Option<PendingAck> = None;
    loop {
        let due = pending.as_ref().map(|p| p.due);
        tokio::select! {
            () = async {
                match due {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => flush_ack(&st, sub.name.as_ref(), &mut pending),
            ev = live.recv() => match ev {
                Ok(e) if e.seq < next => {}
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Whatever arrived live is also in the log; reading from the log keeps
                    // order and fills any gap.
                    if !replay(&st, &sub, &mut next, &mut tx).await {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            msg = rx.next() => match msg {
                Some(Ok(m)) if m.is_text() => {
                    let ack = m
                        .to_str()
                        .ok()
                        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
                        .and_then(|v| v.get("ack").and_then(|a| a.as_u64()));
                    match (ack, &sub.name) {
                        (Some(seq), Some(_)) => {
                            let p = pending.get_or_insert(PendingAck {
                                seq,
                                count: 0,
                                due: tokio::time::Instant::now() + ws.ack_flush_interval,
                            });
                            p.seq = seq;
                            p.count += 1;
                            if p.count >= ws.ack_flush_batch {
                                flush_ack(&st, sub.name.as_ref(), &mut pending);
                            }
                        }
                        _ => {
                            let err = ApiError::invalid(
                                "expected {\"ack\": <seq>} on a named subscription (?subscription=NAME)",
                            );
                            let text = serde_json::to_string(&err).unwrap_or_default();
                            let _ = tx.send(warp::ws::Message::text(text)).await;
                        }
                    }
                }
                Some(Ok(m)) if m.is_close() => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    // Most likely a frame or message over the limit: say so before closing.
                    tracing::debug!(%e, "event stream read failed; closing it");
                    let reason = format!(
                        "closing: inbound frames and messages are limited to {} bytes ({e})",
                        ws.max_message
                    );
                    // A close reason is at most 123 bytes.
                    let reason: String = reason.chars().take(120).collect();
                    let _ = tx.send(warp::ws::Message::close_with(1009u16, reason)).await;
                    break;
                }
                None => break,
            }
        }
    }
    flush_ack(&st, sub.name.as_ref(), &mut pending);
}
