//! `hub keys`: create, list, revoke and rotate API keys on a running hub, through its HTTP
//! API (`/v1/keys`) with an admin key. A new key is printed once, alone on stdout, so a
//! script can capture it; everything else goes to stderr. The admin key is never printed.

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use std::io::Write as _;

#[derive(clap::Args)]
pub struct KeysArgs {
    /// The hub's API
    #[arg(
        long,
        env = "ISTHMUS_HUB",
        default_value = "http://127.0.0.1:7780",
        global = true
    )]
    hub: String,
    /// An admin API key (`hub up` prints one); prefer the environment variable
    #[arg(long, env = "ISTHMUS_KEY", hide_env_values = true, global = true)]
    key: Option<String>,
    #[command(subcommand)]
    cmd: KeysCmd,
}

#[derive(clap::Subcommand)]
enum KeysCmd {
    /// Make a key for a tenant and print it (once)
    Create {
        /// The tenant holding the key (a-z, 0-9, `-`, `_`)
        #[arg(long)]
        tenant: String,
        /// customer, provider, partner or admin
        #[arg(long)]
        role: String,
        /// A label for listings and logs
        #[arg(long)]
        name: Option<String>,
        /// When the key stops working: YYYY-MM-DD (midnight UTC), YYYY-MM-DDTHH:MM:SSZ,
        /// unix seconds, or from now: +30d, +12h, +15m, +90s
        #[arg(long)]
        expires: Option<String>,
    },
    /// List every key made at run time (never the keys themselves)
    List,
    /// Refuse a key from its next request on
    Revoke {
        /// The key's id (`key_...`)
        id: String,
    },
    /// Make a new key with the same tenant, role and expiry, print it, and revoke the old
    Rotate {
        /// The key's id (`key_...`)
        id: String,
    },
}

/// Run `hub keys ...` to completion.
pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: KeysArgs) -> anyhow::Result<()> {
    let key = args
        .key
        .context("an admin key is needed: pass --key or set ISTHMUS_KEY")?;
    let base = args.hub.trim_end_matches('/').to_owned();
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(&key)
    };
    let mut out = std::io::stdout().lock();
    match args.cmd {
        KeysCmd::Create {
            tenant,
            role,
            name,
            expires,
        } => {
            let expires_at = expires
                .as_deref()
                .map(|e| parse_expiry(e, now_secs()))
                .transpose()?;
            let body =
                json!({"tenant": tenant, "role": role, "name": name, "expires_at": expires_at});
            let v = answer(call(reqwest::Method::POST, "/v1/keys").json(&body)).await?;
            eprintln!("created {}", describe(&v));
            writeln!(out, "{}", field(&v, "key")?)?;
        }
        KeysCmd::List => {
            let v = answer(call(reqwest::Method::GET, "/v1/keys")).await?;
            for k in v.as_array().context("the hub answered no list")? {
                writeln!(out, "{}", describe(k))?;
            }
        }
        KeysCmd::Revoke { id } => {
            let v = answer(call(reqwest::Method::DELETE, &format!("/v1/keys/{id}"))).await?;
            writeln!(out, "revoked {}", describe(&v))?;
        }
        KeysCmd::Rotate { id } => {
            let v = answer(call(
                reqwest::Method::POST,
                &format!("/v1/keys/{id}/rotate"),
            ))
            .await?;
            eprintln!("rotated {id} (now revoked) into {}", describe(&v));
            writeln!(out, "{}", field(&v, "key")?)?;
        }
    }
    Ok(())
}

/// Send, and turn an error answer into one line naming the hub's code and message.
async fn answer(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let r = req.send().await.context("cannot reach the hub")?;
    let status = r.status();
    let v: Value = r
        .json()
        .await
        .with_context(|| format!("the hub answered {status} without a JSON body"))?;
    if !status.is_success() {
        bail!(
            "the hub refused ({status}): {}: {}",
            v["code"].as_str().unwrap_or("error"),
            v["message"].as_str().unwrap_or("no message")
        );
    }
    Ok(v)
}

fn field<'a>(v: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    v[name]
        .as_str()
        .with_context(|| format!("the hub's answer has no `{name}`"))
}

/// One line about a key: id, tenant, role, status, name, expiry.
fn describe(k: &Value) -> String {
    let s = |n: &str| k[n].as_str().unwrap_or("-").to_owned();
    let expires = k["expires_at"]
        .as_u64()
        .map_or_else(|| "never".to_owned(), |e| e.to_string());
    format!(
        "{}  tenant {}  role {}  {}  name {}  expires {}",
        s("id"),
        s("tenant"),
        s("role"),
        s("status"),
        s("name"),
        expires
    )
}

fn now_secs() -> u64 {
    isthmus_hub::builder::unix_secs()
}

/// Unix seconds of an expiry written as a date, a date and time (UTC), unix seconds, or an
/// offset from `now`.
fn parse_expiry(s: &str, now: u64) -> anyhow::Result<u64> {
    let bad = || {
        anyhow::anyhow!(
            "--expires `{s}`: expected YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ, unix seconds or +N(s|m|h|d)"
        )
    };
    if let Some(rel) = s.strip_prefix('+') {
        let (n, unit) = rel.split_at(rel.len().saturating_sub(1));
        let n: u64 = n.parse().map_err(|_| bad())?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        return Ok(now.saturating_add(n.saturating_mul(mult)));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (s, None),
    };
    let num = |p: Option<&str>| p.and_then(|x| x.parse::<i64>().ok()).ok_or_else(bad);
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next())?, num(d.next())?, num(d.next())?);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let secs_of_day = match time {
        None => 0,
        Some(t) => {
            let mut p = t.split(':');
            let (h, mi, se) = (num(p.next())?, num(p.next())?, num(p.next())?);
            if p.next().is_some() || h > 23 || mi > 59 || se > 60 {
                return Err(bad());
            }
            h * 3600 + mi * 60 + se
        }
    };
    let t = days_from_civil(y, m, day) * 86_400 + secs_of_day;
    u64::try_from(t).map_err(|_| bad())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_parse_in_every_written_form() {
        assert_eq!(parse_expiry("1970-01-01", 0).unwrap(), 0);
        assert_eq!(parse_expiry("2000-03-01", 0).unwrap(), 951_868_800);
        assert_eq!(
            parse_expiry("2026-12-08T01:45:00Z", 0).unwrap(),
            1_796_694_300
        );
        assert_eq!(parse_expiry("1796694300", 0).unwrap(), 1_796_694_300);
        assert_eq!(parse_expiry("+2d", 100).unwrap(), 100 + 172_800);
        assert_eq!(parse_expiry("+90s", 100).unwrap(), 190);
        for bad in ["tomorrow", "2026-13-01", "+5y", "2026-12-08T25:00:00Z", "+"] {
            assert!(parse_expiry(bad, 0).is_err(), "{bad}");
        }
    }
}
