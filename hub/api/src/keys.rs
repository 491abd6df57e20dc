//! `/v1/keys`: API keys made, listed, revoked and rotated at run time, by admins only.
//!
//! A key is 32 bytes from the OS's generator, written `isk_<64 hex>`; the store keeps only
//! its sha256 (a plain digest suffices for a secret of that entropy), and the key is shown
//! once, in the answer that made it. These writes take no `Idempotency-Key`: replaying an
//! answer would mean keeping the key itself. Keys are never logged, only their ids.

use crate::auth::{key_digest, Role};
use crate::error::{ApiError, ErrorCode};
use crate::model::{CreateKey, CreatedKey, KeyInfo};
use crate::server::{authenticate, body, headers, unix_now, ApiState, Headers};
use crate::store::KeyRecord;
use bytes::Bytes;
use rand::RngCore;
use std::convert::Infallible;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

fn random_hex<const N: usize>() -> String {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// The listing view of a record at `now`.
pub fn key_info(r: &KeyRecord, now: u64) -> KeyInfo {
    let status = if r.revoked_at.is_some() {
        "revoked"
    } else if !r.usable(now) {
        "expired"
    } else {
        "active"
    };
    KeyInfo {
        id: r.id.clone(),
        name: r.name.clone(),
        tenant: r.tenant.clone(),
        role: r.role,
        created_at: r.created_at,
        expires_at: r.expires_at,
        revoked_at: r.revoked_at,
        status: status.to_owned(),
    }
}

fn reply<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

fn admin(st: &ApiState, h: &Headers, action: &str) -> Result<crate::Principal, ApiError> {
    let who = authenticate(st, h)?;
    who.require(&[Role::Admin], action)?;
    Ok(who)
}

/// Store a new key for `tenant` and `role` and return it with its plaintext.
fn issue(
    st: &ApiState,
    name: String,
    tenant: String,
    role: Role,
    expires_at: Option<u64>,
) -> Result<CreatedKey, ApiError> {
    let key = format!("isk_{}", random_hex::<32>());
    let now = unix_now();
    let rec = KeyRecord {
        id: format!("key_{}", random_hex::<8>()),
        name,
        tenant,
        role,
        key_sha256: hex::encode(key_digest(&key)),
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    st.bus
        .store()
        .put_key(&rec)
        .map_err(|e| ApiError::internal(&e))?;
    Ok(CreatedKey {
        info: key_info(&rec, now),
        key,
    })
}

fn existing(st: &ApiState, id: &str) -> Result<KeyRecord, ApiError> {
    st.bus
        .store()
        .get_key(id)
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::not_found("api key", id))
}

/// Mark `rec` revoked now (a second revocation keeps the first time).
fn revoke(st: &ApiState, mut rec: KeyRecord) -> Result<KeyRecord, ApiError> {
    if rec.revoked_at.is_none() {
        rec.revoked_at = Some(unix_now());
        st.bus
            .store()
            .put_key(&rec)
            .map_err(|e| ApiError::internal(&e))?;
    }
    Ok(rec)
}

async fn create(st: &ApiState, h: &Headers, body: Bytes) -> Result<Response, ApiError> {
    let who = admin(st, h, "create api keys")?;
    let req: CreateKey = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("request body is not valid: {e}")))?;
    let problems = req.validate(unix_now());
    if !problems.is_empty() {
        return Err(ApiError::invalid(format!(
            "request has {} problem(s): {}",
            problems.len(),
            problems.join("; ")
        ))
        .with_details(problems));
    }
    let name = req
        .name
        .unwrap_or_else(|| format!("{}-{}", req.tenant, req.role));
    let out = issue(st, name, req.tenant, req.role, req.expires_at)?;
    tracing::info!(by = %who.name, key = %out.info.id, tenant = %out.info.tenant, role = %out.info.role, "api key created");
    Ok(reply(StatusCode::CREATED, &out))
}

async fn list(st: &ApiState, h: &Headers) -> Result<Response, ApiError> {
    admin(st, h, "list api keys")?;
    let now = unix_now();
    let keys: Vec<KeyInfo> = st
        .bus
        .store()
        .keys()
        .map_err(|e| ApiError::internal(&e))?
        .iter()
        .map(|r| key_info(r, now))
        .collect();
    Ok(reply(StatusCode::OK, &keys))
}

async fn revoke_route(st: &ApiState, h: &Headers, id: &str) -> Result<Response, ApiError> {
    let who = admin(st, h, "revoke api keys")?;
    let rec = revoke(st, existing(st, id)?)?;
    tracing::info!(by = %who.name, key = %id, "api key revoked");
    Ok(reply(StatusCode::OK, &key_info(&rec, unix_now())))
}

/// A new key with the old one's tenant, role, name and expiry; the old one is refused from
/// the next request on.
async fn rotate(st: &ApiState, h: &Headers, id: &str) -> Result<Response, ApiError> {
    let who = admin(st, h, "rotate api keys")?;
    let old = existing(st, id)?;
    if old.revoked_at.is_some() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("api key `{id}` is revoked; create a new one instead"),
        ));
    }
    let out = issue(
        st,
        old.name.clone(),
        old.tenant.clone(),
        old.role,
        old.expires_at,
    )?;
    revoke(st, old)?;
    tracing::info!(by = %who.name, old = %id, new = %out.info.id, "api key rotated");
    Ok(reply(StatusCode::CREATED, &out))
}

fn respond(r: Result<Response, ApiError>) -> Result<Response, Infallible> {
    Ok(r.unwrap_or_else(|e| reply(e.status(), &e)))
}

/// The `/v1/keys` routes.
pub(crate) fn routes(
    with: impl Filter<Extract = (Arc<ApiState>,), Error = Infallible> + Clone + Send + Sync + 'static,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let create = warp::path!("v1" / "keys")
        .and(warp::post())
        .and(with.clone())
        .and(headers())
        .and(body())
        .and_then(|st: Arc<ApiState>, h: Headers, body: Bytes| async move {
            respond(create(&st, &h, body).await)
        });
    let list = warp::path!("v1" / "keys")
        .and(warp::get())
        .and(with.clone())
        .and(headers())
        .and_then(|st: Arc<ApiState>, h: Headers| async move { respond(list(&st, &h).await) });
    let revoke = warp::path!("v1" / "keys" / String)
        .and(warp::delete())
        .and(with.clone())
        .and(headers())
        .and_then(|id: String, st: Arc<ApiState>, h: Headers| async move {
            respond(revoke_route(&st, &h, &id).await)
        });
    let rotate = warp::path!("v1" / "keys" / String / "rotate")
        .and(warp::post())
        .and(with)
        .and(headers())
        .and_then(|id: String, st: Arc<ApiState>, h: Headers| async move {
            respond(rotate(&st, &h, &id).await)
        });
    create
        .or(list)
        .unify()
        .or(revoke)
        .unify()
        .or(rotate)
        .unify()
}
