//! API keys with roles (Y.3530 clause 7: provider, customer, partner).
//!
//! Keys are held only as sha256 digests; comparison is constant-time. A request names its
//! key with `Authorization: Bearer <key>` or `X-Api-Key: <key>`.

use crate::error::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// The three roles of Y.3530 clause 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// CSC: configures networks, deploys DApps, moves value.
    Customer,
    /// CSP: runs nodes, registers adapters, monitors.
    Provider,
    /// CSN: builds adapters and crypto services.
    Partner,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Customer => "customer",
            Role::Provider => "provider",
            Role::Partner => "partner",
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
    /// sha256 of the key, as 64 hex digits.
    pub key_sha256: String,
}

impl fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyConfig({}, {})", self.name, self.role)
    }
}

impl ApiKeyConfig {
    /// Build a config entry from a plaintext key (used by `hub up` for the dev key).
    pub fn from_plaintext(name: &str, role: Role, key: &str) -> Self {
        ApiKeyConfig {
            name: name.to_owned(),
            role,
            key_sha256: hex::encode(Sha256::digest(key.as_bytes())),
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// The key table.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: Vec<(String, Role, [u8; 32])>,
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
            match hex::decode(&e.key_sha256)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
            {
                Some(d) => keys.push((e.name.clone(), e.role, d)),
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

    /// Resolve the presented key (from either header) to a principal.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        x_api_key: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let presented = x_api_key
            .map(str::trim)
            .or_else(|| authorization.and_then(|h| h.trim().strip_prefix("Bearer ")))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "missing api key: send `Authorization: Bearer <key>` or `X-Api-Key`",
                )
            })?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (name, role, d) in &self.keys {
            // Walk every entry so timing does not reveal which one matched.
            if bool::from(d.ct_eq(&digest)) {
                found = Some(Principal {
                    name: name.clone(),
                    role: *role,
                });
            }
        }
        found.ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "unknown api key"))
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
            ApiKeyConfig::from_plaintext("ops", Role::Provider, "k-prov"),
        ])
        .unwrap();
        let p = ring.authenticate(Some("Bearer k-cust"), None).unwrap();
        assert_eq!(p.role, Role::Customer);
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
                key_sha256: "zz".into(),
            },
            ApiKeyConfig {
                name: "x".into(),
                role: Role::Partner,
                key_sha256: "00".into(),
            },
        ];
        let problems = KeyRing::new(&bad).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
