//! The OpenAPI 3 document served at `/v1/openapi.json`. A test checks that every route
//! the server answers is documented here and that every documented path answers.

use serde_json::{json, Value};

fn op_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "kind", "tenant", "state", "terminal", "legs", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "string", "description": "prefix (tr_, sw_, msg_) and 128 random bits in hex"},
            "tenant": {"type": "string", "description": "the tenant owning the operation (its creator's)"},
            "kind": {"type": "string", "enum": ["transfer", "swap", "message"]},
            "state": {"type": "string"},
            "terminal": {"type": "boolean"},
            "reason": {"type": "string", "description": "machine-readable reason code: the contract's own (e.g. awaiting_locks, releasing, refunded), or adapter_refused / action_retrying while an action keeps failing (see reason_detail; with adapter_unhealthy, reason_detail names the failing action too)"},
            "reason_detail": {"$ref": "#/components/schemas/ReasonDetail"},
            "legs": {"type": "array", "items": {"$ref": "#/components/schemas/LegStatus"}},
            "created_at": {"type": "integer", "format": "int64"},
            "updated_at": {"type": "integer", "format": "int64"},
            "detail": {}
        }
    })
}

/// What `reason_detail` holds while `reason` is `adapter_refused` or `action_retrying`.
fn reason_detail_schema() -> Value {
    json!({
        "type": "object",
        "description": "the action that keeps failing, as last seen (with reason adapter_refused, action_retrying or adapter_unhealthy); a diagnosis that never changes the operation's state",
        "required": ["action", "error_code", "message", "retryable", "attempts", "first_failed_at", "last_failed_at", "state_reason"],
        "properties": {
            "action": {"type": "string", "enum": ["submit_lock", "record_decision", "release", "refund", "claim"]},
            "leg": {"type": "string", "enum": ["a", "b"]},
            "network": {"type": "string", "description": "absent when the failing step is the hub chain's own record"},
            "error_code": {"type": "string", "description": "the adapter's stable error code (rejected, conflict, unavailable, timeout, ...), or refused / retryable"},
            "message": {"type": "string", "description": "the error, with credentials stripped from URLs"},
            "retryable": {"type": "boolean"},
            "attempts": {"type": "integer", "minimum": 1, "description": "failures in a row since the hub started"},
            "first_failed_at": {"type": "integer", "format": "int64"},
            "last_failed_at": {"type": "integer", "format": "int64"},
            "state_reason": {"type": "string", "description": "the contract's own reason underneath, e.g. releasing"}
        }
    })
}

fn leg_spec() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["network", "asset", "amount", "from", "to"],
        "properties": {
            "network": {"type": "string", "minLength": 1},
            "asset": {"type": "string", "minLength": 1},
            "amount": {"type": "string", "pattern": "^[0-9]+$", "description": "decimal integer, smallest unit"},
            "from": {"type": "string", "minLength": 1},
            "to": {"type": "string", "minLength": 1},
            "lock_by": {"type": "string", "enum": ["hub_wallet", "owner", "provider_vault"], "default": "hub_wallet"}
        }
    })
}

fn errors(codes: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for c in codes {
        m.insert(
            (*c).to_owned(),
            json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    Value::Object(m)
}

fn with_errors(mut ok: Value, codes: &[&str]) -> Value {
    if let (Some(o), Value::Object(e)) = (ok.as_object_mut(), errors(codes)) {
        o.extend(e);
    }
    ok
}

fn create_op(tag: &str, schema: &str, summary: &str) -> Value {
    json!({
        "post": {
            "tags": [tag],
            "summary": summary,
            "security": [{"apiKey": []}],
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": true,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 200}}],
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}},
            "responses": with_errors(json!({
                "202": {"description": "accepted; the body is the operation's status",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OperationStatus"}}}}
            }), &["400", "401", "403", "409", "413", "503"])
        },
        "get": {
            "tags": [tag],
            "summary": format!("list the caller's tenant's {tag} (a partner's: also those of the tenants that granted it), in id order"),
            "security": [{"apiKey": []}],
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
                {"name": "after", "in": "query", "schema": {"type": "string"}}
            ],
            "responses": with_errors(json!({
                "200": {"description": "one page",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OperationPage"}}}}
            }), &["400", "401"])
        }
    })
}

fn get_op(tag: &str) -> Value {
    json!({
        "get": {
            "tags": [tag],
            "summary": format!("status of one {tag} entry; another tenant's answers 404, as a missing one"),
            "security": [{"apiKey": []}],
            "parameters": [
                {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "wait", "in": "query", "description": "seconds to wait for a terminal state (max 60)",
                 "schema": {"type": "integer", "minimum": 0, "maximum": 60}}
            ],
            "responses": with_errors(json!({
                "200": {"description": "status", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OperationStatus"}}}}
            }), &["400", "401", "404"])
        }
    })
}

fn key_info_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "name", "tenant", "role", "created_at", "status"],
        "properties": {
            "id": {"type": "string", "description": "key_ and 16 hex digits; not secret"},
            "name": {"type": "string"},
            "tenant": {"type": "string"},
            "role": {"type": "string", "enum": ["customer", "provider", "partner", "admin"]},
            "created_at": {"type": "integer", "format": "int64"},
            "expires_at": {"type": "integer", "format": "int64"},
            "revoked_at": {"type": "integer", "format": "int64"},
            "status": {"type": "string", "enum": ["active", "expired", "revoked"]}
        }
    })
}

/// `/v1/keys` (admin role) and `/v1/grants` (a tenant's partners).
fn add_tenant_routes(doc: &mut Value) {
    let tenant = json!({"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"});
    let mut created = key_info_schema();
    if let Some(o) = created.as_object_mut() {
        o.insert(
            "required".into(),
            json!([
                "id",
                "name",
                "tenant",
                "role",
                "created_at",
                "status",
                "key"
            ]),
        );
        if let Some(Value::Object(p)) = o.get_mut("properties") {
            p.insert("key".into(), json!({"type": "string", "description": "isk_ and 64 hex digits; shown this once, the hub keeps only its sha256"}));
        }
    }
    let schemas = json!({
        "CreateKey": {
            "type": "object", "additionalProperties": false,
            "required": ["tenant", "role"],
            "properties": {
                "tenant": tenant,
                "role": {"type": "string", "enum": ["customer", "provider", "partner", "admin"]},
                "name": {"type": "string", "minLength": 1, "maxLength": 100, "description": "label (default tenant-role)"},
                "expires_at": {"type": "integer", "format": "int64", "description": "unix seconds, in the future; absent: never"}
            }
        },
        "KeyInfo": key_info_schema(),
        "CreatedKey": created,
        "Grants": {
            "type": "object", "required": ["tenant", "partners"],
            "properties": {"tenant": {"type": "string"}, "partners": {"type": "array", "items": {"type": "string"}}}
        }
    });
    let key_id =
        json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let partner = json!([{"name": "partner", "in": "path", "required": true, "schema": tenant}]);
    let grants = json!({"200": {"description": "the tenant's grants now", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Grants"}}}}});
    let paths = json!({
        "/v1/keys": {
            "post": {
                "tags": ["keys"], "summary": "make an API key for a tenant (admin role); the answer shows the key once",
                "security": [{"apiKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateKey"}}}},
                "responses": with_errors(json!({"201": {"description": "created", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreatedKey"}}}}}), &["400", "401", "403", "413"])
            },
            "get": {
                "tags": ["keys"], "summary": "every key made at run time, never the keys themselves (admin role)",
                "security": [{"apiKey": []}],
                "responses": with_errors(json!({"200": {"description": "keys", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/KeyInfo"}}}}}}), &["401", "403"])
            }
        },
        "/v1/keys/{id}": {
            "delete": {
                "tags": ["keys"], "summary": "revoke a key: refused from the next request on (admin role)",
                "security": [{"apiKey": []}], "parameters": key_id,
                "responses": with_errors(json!({"200": {"description": "revoked", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/KeyInfo"}}}}}), &["401", "403", "404"])
            }
        },
        "/v1/keys/{id}/rotate": {
            "post": {
                "tags": ["keys"], "summary": "a new key with the same tenant, role and expiry; the old one is revoked (admin role)",
                "security": [{"apiKey": []}], "parameters": key_id,
                "responses": with_errors(json!({"201": {"description": "the new key, shown once", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreatedKey"}}}}}), &["401", "403", "404", "409"])
            }
        },
        "/v1/grants": {
            "get": {
                "tags": ["grants"], "summary": "the partner tenants that may read the caller's tenant's objects (customer or admin role)",
                "security": [{"apiKey": []}],
                "responses": with_errors(grants.clone(), &["401", "403"])
            }
        },
        "/v1/grants/{partner}": {
            "put": {
                "tags": ["grants"], "summary": "let partner tenant read the caller's tenant's operations and events (customer or admin role)",
                "security": [{"apiKey": []}], "parameters": partner,
                "responses": with_errors(grants.clone(), &["400", "401", "403"])
            },
            "delete": {
                "tags": ["grants"], "summary": "withdraw the grant (customer or admin role)",
                "security": [{"apiKey": []}], "parameters": partner,
                "responses": with_errors(grants, &["400", "401", "403"])
            }
        }
    });
    merge(doc, schemas, paths);
}

/// The document.
pub fn document() -> Value {
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Isthmus hub API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Cross-chain transfers, HTLC swaps and messages through the Isthmus hub. Every write takes an Idempotency-Key; every error has the shape {code, message, details}."
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "API key of one tenant, with a role: customer, provider, partner or admin. Reads are scoped to the key's tenant (another tenant's object answers 404, as a missing one); a role that may not act answers 403 and changes nothing"}
            },
            "schemas": {
                "Error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "enum": ["unauthenticated", "forbidden", "not_found", "method_not_allowed", "invalid_request", "idempotency_key_required", "idempotency_conflict", "conflict", "payload_too_large", "rate_limited", "unavailable", "internal"]},
                        "message": {"type": "string"},
                        "details": {"type": "array", "items": {"type": "string"}}
                    }
                },
                "LegSpec": leg_spec(),
                "CreateTransfer": {
                    "type": "object", "additionalProperties": false,
                    "required": ["source", "counter", "timeout_secs"],
                    "properties": {
                        "source": {"$ref": "#/components/schemas/LegSpec"},
                        "counter": {"$ref": "#/components/schemas/LegSpec"},
                        "timeout_secs": {"type": "integer", "minimum": 1}
                    }
                },
                "CreateSwap": {
                    "type": "object", "additionalProperties": false,
                    "required": ["initiator", "participant", "initiator_timeout_secs", "participant_timeout_secs"],
                    "properties": {
                        "initiator": {"$ref": "#/components/schemas/LegSpec"},
                        "participant": {"$ref": "#/components/schemas/LegSpec"},
                        "hashlock": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                        "initiator_timeout_secs": {"type": "integer", "minimum": 1},
                        "participant_timeout_secs": {"type": "integer", "minimum": 1}
                    }
                },
                "CreateMessage": {
                    "type": "object", "additionalProperties": false,
                    "required": ["source", "destination", "sender", "recipient", "payload_hex", "timeout_secs"],
                    "properties": {
                        "source": {"type": "string"}, "destination": {"type": "string"},
                        "sender": {"type": "string"}, "recipient": {"type": "string"},
                        "payload_hex": {"type": "string", "pattern": "^([0-9a-fA-F]{2})*$"},
                        "timeout_secs": {"type": "integer", "minimum": 1}
                    }
                },
                "LegStatus": {
                    "type": "object", "required": ["network", "state"],
                    "properties": {"network": {"type": "string"}, "state": {"type": "string"},
                                   "tx": {"type": "string"}, "evidence": {}}
                },
                "OperationStatus": op_schema(),
                "ReasonDetail": reason_detail_schema(),
                "OperationPage": {
                    "type": "object", "required": ["items", "next"],
                    "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/OperationStatus"}},
                                   "next": {"type": "string", "nullable": true}}
                },
                "Event": {
                    "type": "object", "required": ["seq", "kind", "subject", "data"],
                    "properties": {"seq": {"type": "integer"}, "kind": {"type": "string"}, "subject": {"type": "string"},
                                   "tenant": {"type": "string", "description": "the subject's tenant; absent on hub-wide events, which only providers and admins receive"},
                                   "networks": {"type": "array", "items": {"type": "string"}}, "data": {}}
                }
            }
        },
        "paths": {
            "/v1/health": {"get": {"tags": ["node"], "summary": "liveness; no key needed",
                "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/v1/openapi.json": {"get": {"tags": ["node"], "summary": "this document",
                "responses": {"200": {"description": "OpenAPI 3 document", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
            "/v1/platforms": {"get": {"tags": ["platforms"], "summary": "available platforms and their capabilities (Y.3530 8.1.1)",
                "security": [{"apiKey": []}],
                "responses": with_errors(json!({"200": {"description": "platforms", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}}), &["401"])}},
            "/v1/networks": {"get": {"tags": ["networks"], "summary": "networks with status, head and finalized height",
                "security": [{"apiKey": []}],
                "responses": with_errors(json!({"200": {"description": "networks", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}}), &["401"])}},
            "/v1/transfers": create_op("transfers", "CreateTransfer", "start a two-phase lock transfer (lock until both validated)"),
            "/v1/transfers/{id}": get_op("transfers"),
            "/v1/swaps": create_op("swaps", "CreateSwap", "start an HTLC swap"),
            "/v1/swaps/{id}": get_op("swaps"),
            "/v1/messages": create_op("messages", "CreateMessage", "send a cross-network message"),
            "/v1/messages/{id}": get_op("messages"),
            "/v1/events": {"get": {"tags": ["events"],
                "summary": "WebSocket event stream of the caller's tenant (a partner's: also the granting tenants'); replay from a sequence number, filter server-side, ack on named subscriptions",
                "security": [{"apiKey": []}],
                "parameters": [
                    {"name": "from", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                    {"name": "subscription", "in": "query", "schema": {"type": "string"}, "description": "durable cursor name; send {\"ack\": seq} to advance it"},
                    {"name": "kind", "in": "query", "schema": {"type": "string"}, "description": "exact kind or prefix ending in *"},
                    {"name": "subject", "in": "query", "schema": {"type": "string"}},
                    {"name": "network", "in": "query", "schema": {"type": "string"}}
                ],
                "responses": with_errors(json!({"101": {"description": "switching to WebSocket; each text frame is an Event"}}), &["400", "401"])}}
        }
    });
    add_adapter_routes(&mut doc);
    add_tenant_routes(&mut doc);
    add_network_routes(&mut doc);
    doc
}

/// `POST /v1/networks`, `GET` and `DELETE /v1/networks/{id}` (provisioned networks).
fn add_network_routes(doc: &mut Value) {
    let schemas = json!({
        "NetworkSpec": {
            "type": "object",
            "required": ["name", "consensus"],
            "additionalProperties": false,
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,31}$"},
                "platform": {"type": "string", "enum": ["native"]},
                "network_id": {"type": "integer", "minimum": 1},
                "consensus": {"type": "string", "enum": ["pow", "pos"]},
                "nodes": {"type": "integer", "minimum": 1, "maximum": 16},
                "visibility": {"type": "string", "enum": ["public", "private"]},
                "allow": {"type": "array", "items": {"type": "string"}, "description": "isth_ identities (private networks)"},
                "block_interval_ms": {"type": "integer", "minimum": 20, "maximum": 600000},
                "max_block_bytes": {"type": "integer", "minimum": 1024, "maximum": 67108864},
                "max_block_txs": {"type": "integer", "minimum": 1},
                "hash": {"type": "string", "enum": ["sha256", "keccak256", "blake3"]},
                "hardware": {"type": "object", "additionalProperties": false, "properties": {
                    "cpus": {"type": "integer", "minimum": 1},
                    "memory_mb": {"type": "integer", "minimum": 32},
                    "storage_mb": {"type": "integer", "minimum": 64}}},
                "alloc": {"type": "object", "additionalProperties": {"type": "string", "pattern": "^[0-9]+$"},
                          "description": "genesis funds: isth_ account -> amount"},
                "pow_difficulty": {"type": "integer", "minimum": 1},
                "pow_window": {"type": "integer", "minimum": 1},
                "pos_timeout_ms": {"type": "integer", "minimum": 10}
            }
        },
        "NetworkResource": {
            "type": "object",
            "required": ["name", "platform", "status", "network_id", "spec", "nodes", "tenant"],
            "properties": {
                "name": {"type": "string"}, "platform": {"type": "string"},
                "status": {"type": "string", "enum": ["provisioning", "up", "degraded", "down", "stopping", "stopped", "failed"]},
                "network_id": {"type": "integer"},
                "spec": {"$ref": "#/components/schemas/NetworkSpec"},
                "reason": {"type": "string"},
                "tenant": {"type": "string"},
                "nodes": {"type": "array", "items": {"type": "object",
                    "required": ["index", "id", "rpc", "p2p", "process", "restarts"],
                    "properties": {
                        "index": {"type": "integer"}, "id": {"type": "string"},
                        "rpc": {"type": "string"}, "p2p": {"type": "string"},
                        "process": {"type": "string", "enum": ["starting", "up", "down", "stopped"]},
                        "pid": {"type": "integer"}, "restarts": {"type": "integer"}}}}
            }
        }
    });
    let network =
        json!({"application/json": {"schema": {"$ref": "#/components/schemas/NetworkResource"}}});
    let paths = json!({
        "/v1/networks/{id}": {
            "get": {
                "tags": ["networks"],
                "summary": "a provisioned network: spec, status and node processes",
                "security": [{"apiKey": []}],
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": with_errors(json!({"200": {"description": "the network", "content": network}}), &["401", "404"])
            },
            "delete": {
                "tags": ["networks"],
                "summary": "stop a provisioned network (provider role); its data stays unless purge=true; 409 while open operations use it",
                "security": [{"apiKey": []}],
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "purge", "in": "query", "schema": {"type": "boolean"}}
                ],
                "responses": with_errors(json!({"200": {"description": "stopped", "content": network}}), &["400", "401", "403", "404", "409"])
            }
        }
    });
    if let Some(p) = doc
        .pointer_mut("/paths/~1v1~1networks")
        .and_then(Value::as_object_mut)
    {
        p.insert(
            "post".into(),
            json!({
                "tags": ["networks"],
                "summary": "order a native network (provider role): 202 with the network while it is provisioned; progress as `network` events",
                "security": [{"apiKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NetworkSpec"}}}},
                "responses": with_errors(json!({"202": {"description": "provisioning", "content": network}}), &["400", "401", "403", "409", "413"])
            }),
        );
    }
    merge(doc, schemas, paths);
}

/// `POST/GET /v1/adapters` and `DELETE /v1/adapters/{id}` (out-of-process adapters).
fn add_adapter_routes(doc: &mut Value) {
    let schemas = json!({
        "RegisterAdapter": {
            "type": "object", "additionalProperties": false,
            "required": ["network_id", "name", "endpoint", "identity"],
            "properties": {
                "network_id": {"type": "integer", "minimum": 1, "description": "numeric network id; the adapter's descriptor and handshake must name it"},
                "name": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$", "description": "the network's name in requests and listings"},
                "endpoint": {"type": "string", "description": "ip:port where the adapter listens (Noise-TCP, see adapters/remote/PROTOCOL.md)"},
                "identity": {"type": "string", "description": "the adapter's ed25519 key: isth_ + base58, or 0x + 64 hex digits"}
            }
        },
        "AdapterInfo": {
            "type": "object",
            "required": ["id", "name", "network_id", "endpoint", "identity", "status", "healthy", "registered_at"],
            "properties": {
                "id": {"type": "string"}, "name": {"type": "string"},
                "network_id": {"type": "integer"}, "endpoint": {"type": "string"},
                "identity": {"type": "string"},
                "status": {"type": "string", "enum": ["active", "retired"]},
                "healthy": {"type": "boolean"},
                "reason": {"type": "string", "description": "why it is unhealthy"},
                "registered_at": {"type": "integer", "format": "int64"},
                "tenant": {"type": "string", "description": "the registering provider's tenant; only its providers may retire it"}
            }
        }
    });
    let paths = json!({
        "/v1/adapters": {
            "post": {
                "tags": ["adapters"],
                "summary": "register an out-of-process adapter (provider role): the hub connects, authenticates it by its identity key and health-checks it before storing it",
                "security": [{"apiKey": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RegisterAdapter"}}}},
                "responses": with_errors(json!({
                    "201": {"description": "registered (or already registered with the same body)",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AdapterInfo"}}}}
                }), &["400", "401", "403", "413", "503"])
            },
            "get": {
                "tags": ["adapters"],
                "summary": "registered adapters with their health",
                "security": [{"apiKey": []}],
                "responses": with_errors(json!({
                    "200": {"description": "adapters", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/AdapterInfo"}}}}}
                }), &["401"])
            }
        },
        "/v1/adapters/{id}": {
            "delete": {
                "tags": ["adapters"],
                "summary": "retire an adapter a provider of the caller's tenant registered (provider role; another tenant's answers 404); transfers through it pause with reason adapter_unhealthy",
                "security": [{"apiKey": []}],
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": with_errors(json!({
                    "200": {"description": "retired", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AdapterInfo"}}}}
                }), &["401", "403", "404"])
            }
        }
    });
    merge(doc, schemas, paths);
}

/// Add `schemas` to the components and `paths` to the paths of `doc`.
fn merge(doc: &mut Value, schemas: Value, paths: Value) {
    for (section, add) in [("schemas", schemas), ("paths", paths)] {
        let target = if section == "paths" {
            doc.get_mut("paths")
        } else {
            doc.get_mut("components").and_then(|c| c.get_mut("schemas"))
        };
        if let (Some(Value::Object(t)), Value::Object(a)) = (target, add) {
            t.extend(a);
        }
    }
}
