//! API keys with roles (Y.3530 clause 7: provider, customer, partner; plus `admin`, who
//! manages keys), each held by a tenant.
//!
//! Keys are held only as sha256 digests; comparison is constant-time. A request names its
//! key with `Authorization: Bearer <key>` or `X-Api-Key: <key>`. The [`KeyRing`] holds the
//! configured keys; keys made at run time (`POST /v1/keys`) live in the API store
//! ([`crate::keys`]).

use crate::error::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// The tenant of configured keys that name none (and of objects made before tenants).
pub const DEFAULT_TENANT: &str = "default";

/// The three roles of Y.3530 clause 7, and the hub's own key manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// CSC: configures networks, deploys DApps, moves value.
    Customer,
    /// CSP: runs nodes, registers adapters, monitors.
    Provider,
    /// CSN: builds adapters and crypto services; reads across the tenants that granted
    /// its tenant access (an auditor).
    Partner,
    /// Manages API keys (`/v1/keys`), for every tenant.
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Role::Customer),
            "provider" => Ok(Role::Provider),
            "partner" => Ok(Role::Partner),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role `{other}`: expected customer, provider, partner or admin"
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Customer => "customer",
            Role::Provider => "provider",
            Role::Partner => "partner",
            Role::Admin => "admin",
        })
    }
}

/// One configured key.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for logs and audit trails (the key itself is never logged).
    pub name: String,
    pub role: Role,
    /// The tenant holding the key (default: `default`).
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// sha256 of the key, as 64 hex digits.
    pub key_sha256: String,
}

fn default_tenant() -> String {
    DEFAULT_TENANT.to_owned()
}

impl fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ApiKeyConfig({}, {}, tenant {})",
            self.name, self.role, self.tenant
        )
    }
}

impl ApiKeyConfig {
    /// Build a config entry of tenant `default` from a plaintext key (used by `hub up`
    /// for the dev keys, with [`in_tenant`](Self::in_tenant)).
    pub fn from_plaintext(name: &str, role: Role, key: &str) -> Self {
        ApiKeyConfig {
            name: name.to_owned(),
            role,
            tenant: default_tenant(),
            key_sha256: hex::encode(key_digest(key)),
        }
    }

    /// The same key, held by `tenant`.
    pub fn in_tenant(mut self, tenant: &str) -> Self {
        tenant.clone_into(&mut self.tenant);
        self
    }
}

/// The sha256 digest a key is stored as.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Whether `t` may name a tenant: 1 to 64 of `a-z`, `0-9`, `-`, `_`.
pub fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// The tenant the key belongs to: every object the caller makes is this tenant's, and
    /// it reads only this tenant's (a partner also those of the tenants that granted it).
    pub tenant: String,
}

/// The configured keys.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: Vec<(String, Role, String, [u8; 32])>,
}

impl KeyRing {
    /// Validate every entry; returns all problems at once.
    pub fn new(entries: &[ApiKeyConfig]) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut keys = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            if e.name.trim().is_empty() {
                problems.push(format!("api key #{i}: name is empty"));
            }
            if !valid_tenant(&e.tenant) {
                problems.push(format!(
                    "api key `{}`: tenant `{}` must be 1 to 64 of a-z, 0-9, `-`, `_`",
                    e.name, e.tenant
                ));
            }
            match hex::decode(&e.key_sha256)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
            {
                Some(d) => keys.push((e.name.clone(), e.role, e.tenant.clone(), d)),
                None => problems.push(format!(
                    "api key `{}`: key_sha256 must be 64 hex digits",
                    e.name
                )),
            }
        }
        if problems.is_empty() {
            Ok(KeyRing { keys })
        } else {
            Err(problems)
        }
    }

    /// The key presented in either header.
    pub fn presented<'a>(
        authorization: Option<&'a str>,
        x_api_key: Option<&'a str>,
    ) -> Result<&'a str, ApiError> {
        x_api_key
            .map(str::trim)
            .or_else(|| authorization.and_then(|h| h.trim().strip_prefix("Bearer ")))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "missing api key: send `Authorization: Bearer <key>` or `X-Api-Key`",
                )
            })
    }

    /// The configured key with this digest, if any.
    pub fn lookup(&self, digest: &[u8; 32]) -> Option<Principal> {
        let mut found = None;
        for (name, role, tenant, d) in &self.keys {
            // Walk every entry so timing does not reveal which one matched.
            if bool::from(d.ct_eq(digest)) {
                found = Some(Principal {
                    name: name.clone(),
                    role: *role,
                    tenant: tenant.clone(),
                });
            }
        }
        found
    }

    /// Resolve the presented key (from either header) to a principal among the
    /// configured keys.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        x_api_key: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let presented = Self::presented(authorization, x_api_key)?;
        self.lookup(&key_digest(presented))
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "unknown api key"))
    }
}

impl Principal {
    /// Refuse unless the caller holds one of `allowed`.
    pub fn require(&self, allowed: &[Role], action: &str) -> Result<(), ApiError> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            let names: Vec<String> = allowed.iter().map(|r| r.to_string()).collect();
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "role `{}` may not {action}; it needs one of: {}",
                    self.role,
                    names.join(", ")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticate_and_roles() {
        let ring = KeyRing::new(&[
            ApiKeyConfig::from_plaintext("dapp", Role::Customer, "k-cust"),
            ApiKeyConfig::from_plaintext("ops", Role::Provider, "k-prov").in_tenant("acme"),
        ])
        .unwrap();
        let p = ring.authenticate(Some("Bearer k-cust"), None).unwrap();
        assert_eq!(p.role, Role::Customer);
        assert_eq!(p.tenant, DEFAULT_TENANT);
        assert_eq!(
            ring.authenticate(None, Some("k-prov")).unwrap().tenant,
            "acme"
        );
        assert_eq!(ring.authenticate(None, Some("k-prov")).unwrap().name, "ops");
        let e = ring.authenticate(None, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthenticated);
        let e = ring.authenticate(Some("Bearer nope"), None).unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthenticated);
        let e = p
            .require(&[Role::Provider], "register adapters")
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(e.message.contains("customer"));
    }

    #[test]
    fn invalid_key_table_lists_every_problem() {
        let bad = vec![
            ApiKeyConfig {
                name: "".into(),
                role: Role::Customer,
                tenant: "default".into(),
                key_sha256: "zz".into(),
            },
            ApiKeyConfig {
                name: "x".into(),
                role: Role::Partner,
                tenant: "Not A Tenant".into(),
                key_sha256: "00".into(),
            },
        ];
        let problems = KeyRing::new(&bad).unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
    }
}
