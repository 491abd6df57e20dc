//! `xcl debug`: runs one call on the Wasm target, built with statement tracing, and prints
//! each executed statement with its source line, the function's locals and the contract's
//! storage (named where the storage layout allows).

use crate::vectors::{account, encode_args, parse_call, value_word, GAS_LIMIT, WASM_CONTRACT};
use anyhow::{anyhow, Result};
use isthmus_transpiler::diag::line_col;
use isthmus_transpiler::emit::wasm::{emit_with, DebugInfo};
use isthmus_transpiler::ir::{Program, Ty};
use isthmus_transpiler::{entries, Entry};
use isthmus_xcl_runtime::{CallEnv, CallResult, Runtime, Status, World};
use ruint::aliases::U256;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

pub struct Request<'a> {
    pub source: &'a str,
    pub source_name: &'a str,
    pub init_args: &'a [String],
    pub init_value: &'a str,
    /// Calls made, untraced, before the traced one.
    pub before: &'a [String],
    pub call: &'a str,
    pub from: &'a str,
    pub value: &'a str,
    pub time: u64,
}

fn word_str(w: &[u8]) -> String {
    if w.len() == 32 && w[..16].iter().all(|b| *b == 0) {
        U256::from_be_slice(w).to_string()
    } else {
        format!("0x{}", hex::encode(w))
    }
}

/// A storage key as the program names it: `total`, `params.cap`, `slots[2]`,
/// `locks[1].state` (map entries are named when the call computed their key), or the raw key.
fn key_name(p: &Program, pre: &HashMap<[u8; 32], Vec<u8>>, key: &[u8; 32]) -> String {
    if key.iter().all(|b| *b == 0xff) {
        return "<reentrancy lock>".into();
    }
    match place(p, pre, key, 4) {
        Some((name, _)) => name,
        None => format!("0x{}…", hex::encode(&key[..6])),
    }
}

/// Resolves a storage key to a name and the type stored there.
fn place(
    p: &Program,
    pre: &HashMap<[u8; 32], Vec<u8>>,
    key: &[u8; 32],
    depth: u32,
) -> Option<(String, Ty)> {
    let k: U256 = U256::from_be_bytes::<32>(*key);
    let top = u32::from_be_bytes([key[0], key[1], key[2], key[3]]) as usize;
    if key[4..28].iter().all(|b| *b == 0) && top > 0 {
        let s = p.storage.get(top - 1)?;
        let base: U256 = U256::from(top) << 224usize;
        let off = u64::try_from(k - base).unwrap_or(u64::MAX);
        return member(p, s.name.clone(), &s.ty, off);
    }
    if depth == 0 {
        return None;
    }
    // A map entry: keccak256(key ‖ base) plus a small member offset.
    for off in 0u64..32 {
        let Some(d) = k.checked_sub(U256::from(off)) else {
            break;
        };
        let Some(input) = pre.get(&d.to_be_bytes::<32>()).filter(|i| i.len() == 64) else {
            continue;
        };
        let mut base = [0u8; 32];
        base.copy_from_slice(&input[32..]);
        let (name, ty) = place(p, pre, &base, depth - 1)?;
        let Ty::Map(_, v) = ty else { return None };
        let name = format!("{name}[{}]", word_str(&input[..32]));
        return member(p, name, &v, off);
    }
    None
}

/// Member `off` of a value of type `ty` named `name` (a struct field or array element).
fn member(p: &Program, name: String, ty: &Ty, off: u64) -> Option<(String, Ty)> {
    match ty {
        Ty::Struct(sid) => {
            let (f, t) = p.structs[*sid].fields.get(off as usize)?;
            Some((format!("{name}.{f}"), t.clone()))
        }
        Ty::Array(el, _) => Some((format!("{name}[{off}]"), (**el).clone())),
        _ if off == 0 => Some((name, ty.clone())),
        _ => None,
    }
}

fn show_storage<'a>(
    p: &Program,
    pre: &HashMap<[u8; 32], Vec<u8>>,
    kv: impl Iterator<Item = (&'a [u8; 32], &'a [u8; 32])>,
) -> String {
    kv.map(|(k, v)| format!("{} = {}", key_name(p, pre, k), word_str(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn status_str(r: &CallResult) -> String {
    let mut s = match &r.status {
        Status::Success => "success".to_string(),
        Status::Revert(m) => format!("revert: {m}"),
        Status::Panic(0) => "panic".into(),
        Status::Panic(c) => format!("panic: 0x{c:02x}"),
        Status::OutOfFuel => format!("out of fuel after {} fuel", r.fuel_used),
        Status::Trap(t) => format!("trap: {t}"),
    };
    if !r.return_data.is_empty() {
        let words: Vec<String> = r.return_data.chunks(32).map(word_str).collect();
        let _ = write!(s, ", returns [{}]", words.join(", "));
    }
    for e in &r.events {
        let words: Vec<String> = e.data.chunks(32).map(word_str).collect();
        let _ = write!(s, ", event {}({})", e.name, words.join(", "));
    }
    s
}

fn find<'a>(entries: &'a [Entry], name: &str) -> Result<&'a Entry> {
    entries
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| anyhow!("no public function or getter `{name}`"))
}

/// Runs the request and returns the printed trace.
pub fn run(p: &Program, req: &Request<'_>) -> Result<String> {
    let (emitted, info): (_, DebugInfo) = emit_with(p, req.source_name, true);
    let rt = Runtime::new();
    let module = rt.load(&emitted.code)?;
    let mut world = World::default();
    let funds = U256::from(10u8).pow(U256::from(24u8));
    for name in crate::vectors::ACCOUNTS {
        if let Some(a) = account(name) {
            world.balances.insert(a, funds);
        }
    }
    let from = account(req.from).ok_or_else(|| anyhow!("unknown account `{}`", req.from))?;
    let env = |caller, value| CallEnv {
        caller,
        contract: WASM_CONTRACT,
        value,
        time: req.time,
        height: 1,
        fuel: GAS_LIMIT,
    };
    let mut out = String::new();
    if let Some(init) = p.init() {
        let params: Vec<Ty> = init
            .params
            .iter()
            .map(|&l| init.locals[l].ty.clone())
            .collect();
        let input = encode_args(&params, req.init_args, "init")?;
        let deployer = account("deployer").ok_or_else(|| anyhow!("no deployer"))?;
        let r = rt.call(
            &module,
            &mut world,
            "init",
            &input,
            &env(deployer, U256::from_be_bytes(value_word(req.init_value)?)),
            false,
        )?;
        writeln!(out, "init: {}", status_str(&r))?;
    }
    let entries = entries(p);
    for b in req.before {
        // `call(args) [from=NAME] [value=N]`
        let close = b.rfind(')').map_or(b.len(), |i| i + 1);
        let (call, opts) = b.split_at(close);
        let (mut who, mut value) = (from, U256::ZERO);
        for o in opts.split_whitespace() {
            match o.split_once('=') {
                Some(("from", a)) => {
                    who = account(a).ok_or_else(|| anyhow!("unknown account `{a}`"))?
                }
                Some(("value", v)) => value = U256::from_be_bytes(value_word(v)?),
                _ => return Err(anyhow!("bad option `{o}` in --before (from=NAME, value=N)")),
            }
        }
        let (name, args) = parse_call(call)?;
        let input = encode_args(&find(&entries, &name)?.params, &args, &name)?;
        let r = rt.call(&module, &mut world, &name, &input, &env(who, value), false)?;
        writeln!(out, "{b}: {}", status_str(&r))?;
    }
    let (name, args) = parse_call(req.call)?;
    let input = encode_args(&find(&entries, &name)?.params, &args, &name)?;
    let value = U256::from_be_bytes(value_word(req.value)?);
    let r = rt.call(&module, &mut world, &name, &input, &env(from, value), true)?;
    writeln!(out, "debugging {} from {}", req.call, req.from)?;
    let mut before: BTreeMap<[u8; 32], [u8; 32]> = BTreeMap::new();
    for (n, step) in r.trace.iter().enumerate() {
        let Some((fidx, span)) = info.statements.get(step.stmt as usize) else {
            continue;
        };
        let (line, _) = line_col(req.source, span.start as usize);
        let text = req.source.lines().nth(line - 1).unwrap_or("").trim();
        let func = &info.functions[*fidx];
        writeln!(
            out,
            "[{}] {}:{line} in {}: {text}",
            n + 1,
            req.source_name,
            func.name
        )?;
        let locals: Vec<String> = func
            .locals
            .iter()
            .map(|(lname, off)| {
                let o = *off as usize;
                let v = step.stack.get(o..o + 32).map_or("?".into(), word_str);
                format!("{lname} = {v}")
            })
            .collect();
        if !locals.is_empty() {
            writeln!(out, "    locals: {}", locals.join(", "))?;
        }
        // The whole storage before the first statement, then only what each statement changed.
        let changed = step
            .storage
            .iter()
            .filter(|(k, v)| n == 0 || before.get(*k) != Some(*v));
        let storage = show_storage(p, &r.preimages, changed);
        if !storage.is_empty() {
            let label = if n == 0 { "storage" } else { "storage changed" };
            writeln!(out, "    {label}: {storage}")?;
        }
        before = step.storage.clone();
    }
    writeln!(out, "result: {}", status_str(&r))?;
    if let Some(st) = world
        .storage
        .get(&WASM_CONTRACT)
        .filter(|_| r.status == Status::Success)
    {
        writeln!(
            out,
            "final storage: {}",
            show_storage(p, &r.preimages, st.iter())
        )?;
    }
    Ok(out)
}
