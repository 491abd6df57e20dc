//! Test vectors (`NAME.vectors.toml` next to `NAME.xcl`) and the differential runner that
//! plays them on every target and compares outcome class, return data, events and
//! getter-visible state.

use crate::evm::Chain;
use crate::outcome::{Class, Outcome};
use crate::peers;
use anyhow::{anyhow, bail, Context, Result};
use isthmus_transpiler::ir::{Program, Ty};
use isthmus_transpiler::target::Target;
use isthmus_transpiler::{entries, event_signatures, Entry};
use isthmus_xcl_runtime::{CallEnv, Reentry, Runtime, Status, World};
use revm::primitives::U256;
use serde::Deserialize;
use sha2::Digest;
use std::path::Path;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Vectors {
    /// Getter calls compared on every target after each step, e.g. `"balances(alice)"`.
    #[serde(default)]
    pub state: Vec<String>,
    #[serde(default)]
    pub deploy: Deploy,
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
    /// Makes the account `attacker` a contract that re-enters the contract under test with
    /// this call whenever it is paid during one of its own steps.
    pub attacker: Option<Attacker>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attacker {
    /// The reentrant call, e.g. `"withdraw()"`.
    pub call: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    #[serde(default)]
    pub args: Vec<String>,
    pub from: Option<String>,
    pub value: Option<String>,
    pub time: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub call: String,
    pub from: Option<String>,
    pub value: Option<String>,
    pub time: Option<u64>,
    pub height: Option<u64>,
    pub expect: Option<String>,
    pub returns: Option<Vec<String>>,
}

pub const ACCOUNTS: &[&str] = &["deployer", "alice", "bob", "carol", "dave", "attacker"];
/// Gas for one EVM transaction and fuel for one Wasm call.
pub const GAS_LIMIT: u64 = 10_000_000;
pub const WASM_CONTRACT: [u8; 32] = {
    let mut w = [0u8; 32];
    w[12] = 0xc0;
    w[31] = 0xde;
    w
};

pub fn account(name: &str) -> Option<[u8; 32]> {
    let i = ACCOUNTS.iter().position(|a| *a == name)?;
    let mut w = [0u8; 32];
    for b in w[12..31].iter_mut() {
        *b = 0x10;
    }
    w[31] = 0xa0 + i as u8;
    Some(w)
}

fn uint_word(v: U256) -> [u8; 32] {
    v.to_be_bytes::<32>()
}

/// Encodes one vector value as a 32-byte word.
pub fn value_word(s: &str) -> Result<[u8; 32]> {
    let s = s.trim();
    if let Some(a) = account(s) {
        return Ok(a);
    }
    match s {
        "true" => return Ok(uint_word(U256::from(1u8))),
        "false" => return Ok([0; 32]),
        _ => {}
    }
    if let Some(h) = s.strip_prefix("sha256:") {
        let w = value_word(h)?;
        return Ok(sha2::Sha256::digest(w).into());
    }
    if let Some(h) = s.strip_prefix("0x") {
        let digits = if h.len() % 2 == 1 {
            format!("0{h}")
        } else {
            h.to_string()
        };
        let bytes = hex::decode(digits).with_context(|| format!("bad hex value `{s}`"))?;
        if bytes.len() > 32 {
            bail!("hex value `{s}` is longer than 32 bytes");
        }
        let mut w = [0u8; 32];
        w[32 - bytes.len()..].copy_from_slice(&bytes);
        return Ok(w);
    }
    if let Some(e) = s.strip_prefix("2^") {
        let (exp, minus) = match e.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim().parse::<u64>()?),
            None => (e, 0),
        };
        let exp: usize = exp.parse()?;
        let v = if exp >= 256 {
            U256::MAX - U256::from(minus - 1)
        } else {
            (U256::from(1u8) << exp) - U256::from(minus)
        };
        return Ok(uint_word(v));
    }
    let v = U256::from_str_radix(s, 10).map_err(|_| anyhow!("bad value `{s}`"))?;
    Ok(uint_word(v))
}

pub fn parse_call(s: &str) -> Result<(String, Vec<String>)> {
    let s = s.trim();
    let Some((name, rest)) = s.split_once('(') else {
        return Ok((s.to_string(), Vec::new()));
    };
    let inner = rest
        .strip_suffix(')')
        .ok_or_else(|| anyhow!("call `{s}` lacks a closing parenthesis"))?;
    let args = if inner.trim().is_empty() {
        Vec::new()
    } else {
        inner.split(',').map(|a| a.trim().to_string()).collect()
    };
    Ok((name.trim().to_string(), args))
}

fn selector(sig: &str) -> [u8; 4] {
    let h = sha3::Keccak256::digest(sig.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

pub fn encode_args(params: &[Ty], args: &[String], what: &str) -> Result<Vec<u8>> {
    if params.len() != args.len() {
        bail!(
            "`{what}` takes {} argument(s), the vector gives {}",
            params.len(),
            args.len()
        );
    }
    let mut out = Vec::new();
    for a in args {
        out.extend_from_slice(&value_word(a)?);
    }
    Ok(out)
}

pub struct Artifacts {
    pub solidity: Vec<u8>,
    pub vyper: Vec<u8>,
    pub wasm: Vec<u8>,
    /// Runtime code of the EVM reentrancy attacker (`ATTACKER_SOL`).
    pub attacker: Vec<u8>,
}

/// The EVM side of the reentrancy attacker: a contract account that, when armed, answers the
/// next payment by calling back into the payer once, and refuses the payment if that call
/// fails. The Wasm side is `isthmus_xcl_runtime::Reentry`, with the same behaviour.
pub const ATTACKER_SOL: &str = r#"// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.20;

contract XclAttacker {
    address private target;
    bytes private reentry;
    bool private armed;

    function arm(address t, bytes calldata r) external {
        target = t;
        reentry = r;
        armed = true;
    }

    receive() external payable {
        if (!armed) return;
        armed = false;
        (bool ok, ) = target.call(reentry);
        require(ok);
    }
}
"#;

/// Builds all three targets of every program and compiles the EVM ones with one solc-js run
/// and one vyper run, so a whole corpus pays each compiler's start-up once.
pub fn build_all(programs: &[(&Program, String)], work: &Path) -> Result<Vec<Artifacts>> {
    let mut sols = Vec::new();
    let mut vys = Vec::new();
    let mut wasms = Vec::new();
    for (k, (program, source_name)) in programs.iter().enumerate() {
        let build = |t: Target| -> Result<Vec<u8>> {
            isthmus_transpiler::build(program, t, source_name)
                .map(|e| e.code)
                .map_err(|d| {
                    anyhow!(
                        "{source_name}: target {t}: {}",
                        d.first().map_or("", |x| x.message.as_str())
                    )
                })
        };
        let sol = String::from_utf8(build(Target::Solidity)?)?;
        let sol_file = format!("c{k}_{}.sol", program.name);
        std::fs::write(work.join(&sol_file), &sol)?;
        sols.push((sol_file, program.name.clone(), sol));
        let vy_path = work.join(format!("c{k}_{}.vy", program.name));
        std::fs::write(&vy_path, build(Target::Vyper)?)?;
        vys.push(vy_path);
        wasms.push(build(Target::Wasm)?);
    }
    sols.push((
        "XclAttacker.sol".into(),
        "XclAttacker".into(),
        ATTACKER_SOL.into(),
    ));
    let mut s = peers::solc(&sols)?;
    let attacker = s.pop().map(|c| c.runtime).unwrap_or_default();
    let v = peers::vyper(&vys)?;
    Ok(s.into_iter()
        .zip(v)
        .zip(wasms)
        .map(|((s, v), wasm)| Artifacts {
            solidity: s.bytecode,
            vyper: v.bytecode,
            wasm,
            attacker: attacker.clone(),
        })
        .collect())
}

#[derive(Default)]
pub struct Report {
    pub lines: Vec<String>,
    pub passed: usize,
    pub failed: usize,
}

fn wasm_outcome(r: &isthmus_xcl_runtime::CallResult) -> Outcome {
    let class = match &r.status {
        Status::Success => Class::Success,
        Status::Revert(m) => Class::Revert(m.clone()),
        Status::Panic(0) => Class::Panic(None),
        Status::Panic(c) => Class::Panic(Some(*c)),
        Status::OutOfFuel => Class::OutOfGas,
        Status::Trap(t) => Class::Trap(t.clone()),
    };
    Outcome {
        stop: (r.status == Status::OutOfFuel)
            .then(|| format!("wasmi stopped: out of fuel after {} fuel", r.fuel_used)),
        class,
        data: r.return_data.clone(),
        events: r
            .events
            .iter()
            .map(|e| (e.name.clone(), e.data.clone()))
            .collect(),
    }
}

fn show(o: &Outcome) -> String {
    let mut s = o.class.to_string();
    if !o.data.is_empty() {
        s.push_str(&format!(" ret=0x{}", hex::encode(&o.data)));
    }
    for (n, d) in &o.events {
        s.push_str(&format!(" event {n}(0x{})", hex::encode(d)));
    }
    s
}

/// Compares the three outcomes; returns a description of each divergence.
fn diverge(outs: &[(Target, Outcome)]) -> Vec<String> {
    let mut problems = Vec::new();
    let (rt, r) = &outs[outs.len() - 1];
    for (t, o) in &outs[..outs.len() - 1] {
        let same = o.class.agrees(&r.class) && o.data == r.data && o.events == r.events;
        if !same {
            problems.push(format!("{t}: {} / {rt}: {}", show(o), show(r)));
        }
    }
    problems
}

/// Arms the EVM attacker at `attacker` to re-enter the chain's contract with `reentry`.
fn arm(chain: &mut Chain, attacker: &[u8; 32], reentry: &[u8]) -> Result<()> {
    let target = chain
        .contract
        .ok_or_else(|| anyhow!("contract was not deployed"))?;
    let mut cd = selector("arm(address,bytes)").to_vec();
    let mut t = [0u8; 32];
    t[12..].copy_from_slice(target.as_slice());
    cd.extend_from_slice(&t);
    cd.extend_from_slice(&uint_word(U256::from(64u8)));
    cd.extend_from_slice(&uint_word(U256::from(reentry.len())));
    cd.extend_from_slice(reentry);
    cd.resize(cd.len() + (32 - reentry.len() % 32) % 32, 0);
    let r = chain.call_to(attacker, attacker, cd)?;
    if !r.is_success() {
        bail!("arming the EVM attacker failed: {r:?}");
    }
    Ok(())
}

pub fn run(program: &Program, art: &Artifacts, v: &Vectors) -> Result<Report> {
    let mut report = Report::default();
    let entries = entries(program);
    let events: Vec<([u8; 32], String)> = event_signatures(program)
        .into_iter()
        .map(|(n, sig)| (sha3::Keccak256::digest(sig.as_bytes()).into(), n))
        .collect();
    let all: Vec<[u8; 32]> = ACCOUNTS.iter().filter_map(|a| account(a)).collect();
    let funds = U256::from(10u8).pow(U256::from(24u8));
    let mut sol = Chain::new(&all, funds, GAS_LIMIT);
    let mut vy = Chain::new(&all, funds, GAS_LIMIT);
    let rt = Runtime::new();
    let module = rt.load(&art.wasm)?;
    let mut world = World::default();
    for a in &all {
        world.balances.insert(*a, funds);
    }
    let mut time = v.deploy.time.unwrap_or(1_000_000);
    let mut height = 1u64;
    let from = account(v.deploy.from.as_deref().unwrap_or("deployer"))
        .ok_or_else(|| anyhow!("unknown deployer account"))?;
    let value = U256::from_be_bytes(value_word(v.deploy.value.as_deref().unwrap_or("0"))?);
    let init_params: Vec<Ty> = program
        .init()
        .map(|f| f.params.iter().map(|&l| f.locals[l].ty.clone()).collect())
        .unwrap_or_default();
    let args = encode_args(&init_params, &v.deploy.args, "init")?;
    let mut code = art.solidity.clone();
    code.extend_from_slice(&args);
    let o_sol = sol.deploy(&from, code, value, time, height, &events)?;
    let mut code = art.vyper.clone();
    code.extend_from_slice(&args);
    let o_vy = vy.deploy(&from, code, value, time, height, &events)?;
    let env = |caller, value, time, height| CallEnv {
        caller,
        contract: WASM_CONTRACT,
        value,
        time,
        height,
        fuel: GAS_LIMIT,
    };
    let o_wasm = if program.init().is_some() {
        let r = rt.call(
            &module,
            &mut world,
            "init",
            &args,
            &env(from, value, time, height),
            false,
        )?;
        wasm_outcome(&r)
    } else {
        world.storage.entry(WASM_CONTRACT).or_default();
        Outcome::new(Class::Success)
    };
    // Constructors return code, not data: compare only class and events.
    let strip = |mut o: Outcome| {
        o.data.clear();
        o
    };
    let outs = vec![
        (Target::Solidity, strip(o_sol)),
        (Target::Vyper, strip(o_vy)),
        (Target::Wasm, strip(o_wasm)),
    ];
    let d = diverge(&outs);
    if d.is_empty() && matches!(outs[2].1.class, Class::Success) {
        report.passed += 1;
        report.lines.push("ok   deploy".into());
    } else {
        report.failed += 1;
        report.lines.push(format!("FAIL deploy: {}", d.join("; ")));
        if !matches!(outs[2].1.class, Class::Success) {
            report
                .lines
                .push(format!("     deploy did not succeed: {}", show(&outs[2].1)));
        }
        return Ok(report);
    }
    let find = |name: &str| -> Result<&Entry> {
        entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| anyhow!("no public function or getter `{name}`"))
    };
    let attacker = account("attacker").ok_or_else(|| anyhow!("no attacker account"))?;
    // The reentrant call: calldata for the EVM attacker, entry and input for the Wasm one.
    let reentry = match &v.attacker {
        Some(a) => {
            let (name, args) = parse_call(&a.call)?;
            let input = encode_args(&find(&name)?.params, &args, &name)?;
            let mut cd = selector(&find(&name)?.signature()).to_vec();
            cd.extend_from_slice(&input);
            for chain in [&mut sol, &mut vy] {
                chain.install(&attacker, art.attacker.clone(), funds);
            }
            world.hooks.insert(
                attacker,
                Reentry {
                    entry: name,
                    input,
                    armed: false,
                },
            );
            Some(cd)
        }
        None => None,
    };
    for (i, step) in v.steps.iter().enumerate() {
        if let Some(t) = step.time {
            time = t;
        }
        height = step.height.unwrap_or(height + 1);
        let (name, args) = parse_call(&step.call)?;
        let entry = find(&name)?;
        let input = encode_args(&entry.params, &args, &name)?;
        let mut calldata = selector(&entry.signature()).to_vec();
        calldata.extend_from_slice(&input);
        let from_name = step.from.as_deref().unwrap_or("alice");
        let from = account(from_name).ok_or_else(|| anyhow!("unknown account `{from_name}`"))?;
        let value = U256::from_be_bytes(value_word(step.value.as_deref().unwrap_or("0"))?);
        if let (Some(cd), true) = (&reentry, from == attacker) {
            for chain in [&mut sol, &mut vy] {
                arm(chain, &attacker, cd)?;
            }
            if let Some(h) = world.hooks.get_mut(&attacker) {
                h.armed = true;
            }
        }
        let a = sol.call(&from, calldata.clone(), value, time, height, &events)?;
        let b = vy.call(&from, calldata, value, time, height, &events)?;
        let r = rt.call(
            &module,
            &mut world,
            &name,
            &input,
            &env(from, value, time, height),
            false,
        )?;
        let c = wasm_outcome(&r);
        let label = format!("step {} {} from {from_name}", i + 1, step.call);
        let outs = vec![(Target::Solidity, a), (Target::Vyper, b), (Target::Wasm, c)];
        let mut problems = diverge(&outs);
        let wasm = &outs[2].1;
        if let Some(e) = &step.expect {
            for (t, o) in &outs {
                if !o.class.matches(e) {
                    problems.push(format!("{t}: expected {e}, got {}", o.class));
                }
            }
        }
        if let Some(ret) = &step.returns {
            let mut want = Vec::new();
            for r in ret {
                want.extend_from_slice(&value_word(r)?);
            }
            if wasm.data != want {
                problems.push(format!(
                    "expected return 0x{}, got 0x{}",
                    hex::encode(&want),
                    hex::encode(&wasm.data)
                ));
            }
        }
        // Getter-visible state after the step.
        for q in &v.state {
            let (gname, gargs) = parse_call(q)?;
            let g = find(&gname)?;
            let input = encode_args(&g.params, &gargs, &gname)?;
            let mut cd = selector(&g.signature()).to_vec();
            cd.extend_from_slice(&input);
            let a = sol.call(&from, cd.clone(), U256::ZERO, time, height, &events)?;
            let b = vy.call(&from, cd, U256::ZERO, time, height, &events)?;
            let r = rt.call(
                &module,
                &mut world,
                &gname,
                &input,
                &env(from, U256::ZERO, time, height),
                false,
            )?;
            let c = wasm_outcome(&r);
            for p in diverge(&[(Target::Solidity, a), (Target::Vyper, b), (Target::Wasm, c)]) {
                problems.push(format!("state {q}: {p}"));
            }
        }
        if problems.is_empty() {
            report.passed += 1;
            report.lines.push(format!("ok   {label}: {}", show(wasm)));
            for (t, o) in &outs {
                if let Some(why) = &o.stop {
                    report.lines.push(format!("     {t}: {why}"));
                }
            }
        } else {
            report.failed += 1;
            report.lines.push(format!("FAIL {label}"));
            for p in problems {
                report.lines.push(format!("     {p}"));
            }
        }
    }
    Ok(report)
}
