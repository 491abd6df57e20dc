//! How the API is served: TLS, per-key rate limits, CORS and WebSocket limits, in one typed
//! struct with defaults that never bother a normal client. Binaries fill it from their flags
//! and config; this crate never reads a file to build it.

use std::path::PathBuf;
use std::time::Duration;

/// Everything about serving the API that is not a route.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiSettings {
    /// Serve HTTPS with this certificate and key; plain HTTP when `None`.
    pub tls: Option<ApiTls>,
    pub rate_limit: RateLimit,
    pub cors: CorsSettings,
    pub ws: WsSettings,
}

/// A PEM certificate chain and its PEM private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A token bucket per API key (per client IP for requests without a valid key): `per_second`
/// tokens a second, at most `burst` saved up. `per_second == 0` disables the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 50,
            burst: 100,
        }
    }
}

impl RateLimit {
    /// No limit at all.
    pub const OFF: RateLimit = RateLimit {
        per_second: 0,
        burst: 0,
    };

    pub fn enabled(&self) -> bool {
        self.per_second > 0
    }
}

/// Cross-origin access for browsers. No origins (the default) sends no CORS headers at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsSettings {
    /// Exact origins (`https://app.example`), or the single entry `*` for any.
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    /// Whether browsers may send credentials (cookies, client certificates); never with `*`.
    pub credentials: bool,
    /// How long a browser may cache a preflight answer.
    pub max_age: Duration,
}

impl Default for CorsSettings {
    fn default() -> Self {
        CorsSettings {
            origins: Vec::new(),
            methods: ["GET", "POST", "PUT", "DELETE"].map(String::from).to_vec(),
            headers: [
                "Authorization",
                "X-Api-Key",
                "Idempotency-Key",
                "Content-Type",
            ]
            .map(String::from)
            .to_vec(),
            credentials: false,
            max_age: Duration::from_secs(600),
        }
    }
}

impl CorsSettings {
    pub fn enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    pub fn any_origin(&self) -> bool {
        self.origins.iter().any(|o| o == "*")
    }
}

/// Limits of the WebSocket event stream, and how acknowledgements are made durable.
///
/// Clients only ever send small `{"ack": seq}` messages, so inbound frames and messages are
/// kept small. Acks of a named subscription are written to the store and flushed in groups:
/// at most `ack_flush_interval` after the first unflushed ack, after `ack_flush_batch` acks,
/// and when the stream closes. A hub that crashes may therefore lose the acks of the last
/// window, and a resumed subscription replays those events again (at-least-once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsSettings {
    pub max_frame: usize,
    pub max_message: usize,
    pub ack_flush_interval: Duration,
    pub ack_flush_batch: usize,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings {
            max_frame: 64 * 1024,
            max_message: 64 * 1024,
            ack_flush_interval: Duration::from_millis(100),
            ack_flush_batch: 64,
        }
    }
}

const KNOWN_METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "OPTIONS"];

impl ApiSettings {
    /// Every problem at once; empty when the settings can be served.
    pub fn validate(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(tls) = &self.tls {
            for (what, path) in [("tls certificate", &tls.cert), ("tls key", &tls.key)] {
                if !path.is_file() {
                    out.push(format!(
                        "{what} `{}` is not a readable file",
                        path.display()
                    ));
                }
            }
        }
        let rl = &self.rate_limit;
        if rl.enabled() && rl.burst == 0 {
            out.push(format!(
                "rate limit burst must be at least 1 when the rate is {} per second",
                rl.per_second
            ));
        }
        let c = &self.cors;
        if c.any_origin() && c.origins.len() > 1 {
            out.push("cors origins: `*` must be the only entry".to_owned());
        }
        if c.any_origin() && c.credentials {
            out.push("cors: `*` origins are not allowed with credentials".to_owned());
        }
        for o in c.origins.iter().filter(|o| o.as_str() != "*") {
            let ok = (o.starts_with("http://") || o.starts_with("https://"))
                && !o.ends_with('/')
                && o.split("://").nth(1).is_some_and(|h| !h.is_empty())
                && !o.chars().any(|ch| ch.is_whitespace());
            if !ok {
                out.push(format!(
                    "cors origin `{o}` must be `*` or scheme://host[:port] with no path"
                ));
            }
        }
        if c.enabled() {
            for m in &c.methods {
                if !KNOWN_METHODS.contains(&m.to_ascii_uppercase().as_str()) {
                    out.push(format!("cors method `{m}` is not one the api serves"));
                }
            }
            for h in &c.headers {
                if h.is_empty() || !h.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-') {
                    out.push(format!("cors header `{h}` is not a header name"));
                }
            }
        }
        let ws = &self.ws;
        if ws.max_frame < 1024 || ws.max_message < 1024 {
            out.push(format!(
                "websocket frame and message limits must be at least 1024 bytes, got {} and {}",
                ws.max_frame, ws.max_message
            ));
        }
        if ws.max_frame > ws.max_message {
            out.push(format!(
                "websocket frame limit {} exceeds the message limit {}",
                ws.max_frame, ws.max_message
            ));
        }
        if ws.ack_flush_batch == 0 {
            out.push("websocket ack flush batch must be at least 1".to_owned());
        }
        if ws.ack_flush_interval.is_zero() || ws.ack_flush_interval > Duration::from_secs(10) {
            out.push(format!(
                "websocket ack flush interval must be between 1 ms and 10 s, got {:?}",
                ws.ack_flush_interval
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_every_problem_is_listed() {
        assert!(ApiSettings::default().validate().is_empty());
        let bad = ApiSettings {
            tls: Some(ApiTls {
                cert: "/nonexistent/cert.pem".into(),
                key: "/nonexistent/key.pem".into(),
            }),
            rate_limit: RateLimit {
                per_second: 5,
                burst: 0,
            },
            cors: CorsSettings {
                origins: vec!["*".into(), "ftp://x".into()],
                credentials: true,
                methods: vec!["BREW".into()],
                ..CorsSettings::default()
            },
            ws: WsSettings {
                ack_flush_batch: 0,
                ..WsSettings::default()
            },
        };
        let problems = bad.validate();
        assert_eq!(problems.len(), 8, "{problems:#?}");
        assert!(problems[0].contains("/nonexistent/cert.pem"));
        assert!(problems.iter().any(|p| p.contains("ftp://x")));
        assert!(problems.iter().any(|p| p.contains("BREW")));
    }
}
