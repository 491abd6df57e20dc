//! `/v1/networks/{name}` and `POST /v1/networks`: networks as resources. A provider orders a
//! native network from a spec (`202` with the network resource while it is provisioned;
//! progress goes to the event stream as `network` events), reads it, and deletes it (its
//! node processes stop; its data stays unless `?purge=true`; a network that open transfers,
//! swaps or messages use answers `409` with their ids). Every authenticated caller reads.
//!
//! The spec is checked by the backend, which lists every problem at once; nothing is started
//! on a bad spec. `GET /v1/networks` (the listing of every linked network) is served with the
//! other listings in `server.rs`.

use crate::auth::Role;
use crate::backend::BackendError;
use crate::error::ApiError;
use crate::model::NetworkResource;
use crate::server::{authenticate, body, headers, ApiState, Headers};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

/// Provisioned networks, as the hub runs them.
#[async_trait]
pub trait Provisioning: Send + Sync + 'static {
    /// Check `spec` (every problem at once: [`BackendError::Rejected`]), record the network
    /// durably, start provisioning it, and answer its resource (`provisioning`). A name in
    /// use is [`BackendError::Conflict`].
    async fn create(
        &self,
        by: &crate::Principal,
        spec: serde_json::Value,
    ) -> Result<NetworkResource, BackendError>;
    /// A provisioned network by name.
    async fn get(&self, name: &str) -> Result<Option<NetworkResource>, BackendError>;
    /// Stop it (and with `purge`, remove its data); [`BackendError::Conflict`] while open
    /// operations use it.
    async fn delete(
        &self,
        by: &crate::Principal,
        name: &str,
        purge: bool,
    ) -> Result<NetworkResource, BackendError>;
}

/// A hub that provisions nothing.
pub struct NoProvisioning;

#[async_trait]
impl Provisioning for NoProvisioning {
    async fn create(
        &self,
        _by: &crate::Principal,
        _spec: serde_json::Value,
    ) -> Result<NetworkResource, BackendError> {
        Err(BackendError::Unavailable(
            "this hub provisions no networks".into(),
        ))
    }
    async fn get(&self, _name: &str) -> Result<Option<NetworkResource>, BackendError> {
        Ok(None)
    }
    async fn delete(
        &self,
        _by: &crate::Principal,
        name: &str,
        _purge: bool,
    ) -> Result<NetworkResource, BackendError> {
        Err(BackendError::NotFound(format!("network `{name}`")))
    }
}

fn reply<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

fn answer(r: Result<Response, ApiError>) -> Result<Response, std::convert::Infallible> {
    Ok(r.unwrap_or_else(|e| reply(e.status(), &e)))
}

async fn create(st: &ApiState, h: &Headers, body: Bytes) -> Result<Response, ApiError> {
    let who = authenticate(st, h)?;
    who.require(&[Role::Provider], "provision a network")?;
    let spec: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("the body is not JSON: {e}")))?;
    let net = st.backends.provisioning.create(&who, spec).await?;
    tracing::info!(principal = %who.name, network = %net.name, "network ordered");
    Ok(reply(StatusCode::ACCEPTED, &net))
}

async fn get(st: &ApiState, h: &Headers, name: &str) -> Result<Response, ApiError> {
    authenticate(st, h)?;
    match st.backends.provisioning.get(name).await? {
        Some(net) => Ok(reply(StatusCode::OK, &net)),
        None => Err(BackendError::NotFound(format!("network `{name}`")).into()),
    }
}

async fn delete(
    st: &ApiState,
    h: &Headers,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let who = authenticate(st, h)?;
    who.require(&[Role::Provider], "delete a network")?;
    let purge = match q.get("purge").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "purge must be true or false, not `{other}`"
            )))
        }
    };
    let net = st.backends.provisioning.delete(&who, name, purge).await?;
    tracing::info!(principal = %who.name, network = %name, purge, "network deleted");
    Ok(reply(StatusCode::OK, &net))
}

/// The routes of this module.
pub fn routes(
    with: impl Filter<Extract = (Arc<ApiState>,), Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let post = warp::path!("v1" / "networks")
        .and(warp::post())
        .and(with.clone())
        .and(headers())
        .and(body())
        .and_then(|st: Arc<ApiState>, h: Headers, b: Bytes| async move {
            answer(create(&st, &h, b).await)
        });
    let one = warp::path!("v1" / "networks" / String)
        .and(warp::get())
        .and(with.clone())
        .and(headers())
        .and_then(|name: String, st: Arc<ApiState>, h: Headers| async move {
            answer(get(&st, &h, &name).await)
        });
    let remove = warp::path!("v1" / "networks" / String)
        .and(warp::delete())
        .and(with)
        .and(headers())
        .and(warp::query::<HashMap<String, String>>())
        .and_then(
            |name: String, st: Arc<ApiState>, h: Headers, q: HashMap<String, String>| async move {
                answer(delete(&st, &h, &name, &q).await)
            },
        );
    post.or(one).unify().or(remove).unify()
}
