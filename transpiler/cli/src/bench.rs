//! `xcl bench`: how long XCL takes to check a set of contracts and build each to all three
//! targets, against how long solc-js takes to compile the Solidity that XCL emitted, both
//! measured in the same run on the same machine.

use crate::peers;
use anyhow::{anyhow, bail, Result};
use isthmus_transpiler::target::Target;
use isthmus_transpiler::{build, check_source};
use std::fmt::Write;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Checks every source and builds it to every target; returns the emitted Solidity as
/// (file, contract, text) for solc-js.
fn xcl_once(sources: &[(String, String)]) -> Result<Vec<(String, String, String)>> {
    let mut sol = Vec::new();
    for (name, src) in sources {
        let fe = check_source(src);
        let p = fe
            .program
            .ok_or_else(|| anyhow!("{name} has errors; run xcl check"))?;
        for t in [Target::Solidity, Target::Vyper, Target::Wasm] {
            let e = build(&p, t, name).map_err(|_| anyhow!("{name}: target {t} failed"))?;
            if t == Target::Solidity {
                sol.push((
                    format!("{}.sol", p.name),
                    p.name.clone(),
                    String::from_utf8(e.code)?,
                ));
            }
        }
    }
    Ok(sol)
}

pub fn run(sources: &[(String, String)], iterations: u32, solc_runs: u32) -> Result<String> {
    if iterations == 0 || solc_runs == 0 {
        bail!("--iterations and --solc-runs must be at least 1");
    }
    let mut sol = Vec::new();
    let mut xcl = Vec::new();
    for _ in 0..iterations {
        let t = Instant::now();
        sol = xcl_once(sources)?;
        xcl.push(t.elapsed());
    }
    let (mut wall, mut inner) = (Vec::new(), Vec::new());
    for _ in 0..solc_runs {
        let t = Instant::now();
        let (_, compile) = peers::solc_timed(&sol)?;
        wall.push(t.elapsed());
        inner.push(compile);
    }
    let (x, w, c) = (median(xcl), median(wall), median(inner));
    let mut out = String::new();
    writeln!(
        out,
        "xcl check + build to solidity, vyper, wasm of {} contract(s): median {:.3} ms over {iterations} run(s)",
        sources.len(),
        ms(x)
    )?;
    writeln!(
        out,
        "solc-js compiling the emitted Solidity: median {:.1} ms wall (node + solc-js load + compile), {:.1} ms in solc.compile, over {solc_runs} run(s)",
        ms(w),
        ms(c)
    )?;
    let ratio = |other: Duration| other.as_secs_f64() / x.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "ratio: solc-js wall / xcl = {:.1}x, solc.compile / xcl = {:.1}x",
        ratio(w),
        ratio(c)
    )?;
    Ok(out)
}
