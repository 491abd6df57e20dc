//! The `xcl` command: check, build, test, audit, debug and format XCL contracts. This is the
//! I/O layer around the pure `isthmus-transpiler` library; it is the only place that reads
//! sources, writes outputs and runs the external compilers. It must never hide a failure:
//! every problem ends in a message and a non-zero exit code.
#![allow(clippy::print_stdout)] // a command-line tool's output is its interface

mod bench;
mod debug;
mod evm;
mod outcome;
mod peers;
mod vectors;

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use isthmus_transpiler::diag::{has_errors, render, to_json};
use isthmus_transpiler::target::Target;
use isthmus_transpiler::{check_source, Diagnostic};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit codes: 0 success, 1 diagnostics (the source has errors), 2 usage, 3 tests failed or
/// targets diverged, 4 audit findings at or above the threshold, 5 environment (I/O, missing
/// compiler).
const EXIT_DIAGNOSTICS: u8 = 1;
const EXIT_TESTS: u8 = 3;
const EXIT_AUDIT: u8 = 4;
const EXIT_ENV: u8 = 5;

#[derive(Parser)]
#[command(
    name = "xcl",
    version,
    about = "The XCL contract language: one source to Solidity, Vyper and Wasm"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum MessageFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Parse and type-check a contract.
    Check {
        file: PathBuf,
        /// `json` prints diagnostics with byte offsets, like solc's standard JSON.
        #[arg(long, value_enum, default_value = "human")]
        message_format: MessageFormat,
    },
    /// Compile a contract to one or more targets.
    Build {
        file: PathBuf,
        /// Comma-separated: solidity, vyper, wasm.
        #[arg(long, default_value = "solidity,vyper,wasm")]
        target: String,
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        message_format: MessageFormat,
    },
    /// Run NAME.vectors.toml on every target and compare the outcomes. Several files are
    /// compiled together (one solc-js and one vyper run) and tested one after another.
    Test {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Vectors file (one contract only); defaults to the contract's name with
        /// `.vectors.toml`.
        #[arg(long)]
        vectors: Option<PathBuf>,
    },
    /// Step one call through the Wasm build, showing source lines, locals and storage.
    Debug {
        file: PathBuf,
        /// The call to trace, e.g. `claim(0x2a)`.
        #[arg(long)]
        call: String,
        /// Arguments for `init`, comma-separated.
        #[arg(long, default_value = "")]
        init: String,
        /// Value sent with `init`.
        #[arg(long, default_value = "0")]
        init_value: String,
        /// Calls to make first, untraced (repeatable): `call(args) [from=NAME] [value=N]`.
        #[arg(long)]
        before: Vec<String>,
        /// Caller: deployer, alice, bob, carol, dave or attacker.
        #[arg(long, default_value = "alice")]
        from: String,
        /// Value sent with the traced call.
        #[arg(long, default_value = "0")]
        value: String,
        /// Block time for every call.
        #[arg(long, default_value_t = 1_000_000)]
        time: u64,
    },
    /// Time check + build of the given contracts to all three targets against solc-js
    /// compiling the emitted Solidity alone, in the same run, and print the ratio.
    Bench {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Runs of check + build (the median is reported).
        #[arg(long, default_value_t = 50)]
        iterations: u32,
        /// Runs of solc-js (the median is reported).
        #[arg(long, default_value_t = 3)]
        solc_runs: u32,
    },
    /// Print a contract in the canonical layout (comments kept).
    Fmt {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Rewrite the files in place instead of printing.
        #[arg(long, conflicts_with = "check")]
        write: bool,
        /// Print nothing; exit with code 1 if a file is not formatted.
        #[arg(long)]
        check: bool,
    },
    /// Run the security detectors (reentrancy, timestamp, transaction order, unchecked
    /// calls, unguarded writes) and report findings with SWC ids.
    Audit {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        message_format: MessageFormat,
        /// Exit with code 4 when a finding is at least this severe.
        #[arg(long, value_enum, default_value = "high")]
        deny: DenyLevel,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum DenyLevel {
    Low,
    Medium,
    High,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ENV)
        }
    }
}

fn read(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}

fn report(file: &Path, src: &str, diags: &[Diagnostic], fmt: MessageFormat) {
    let name = file.display().to_string();
    match fmt {
        MessageFormat::Json => println!("{}", to_json(&name, src, diags)),
        MessageFormat::Human => {
            if !diags.is_empty() {
                eprint!("{}", render(&name, src, diags, false));
            }
        }
    }
}

fn source_name(file: &Path) -> String {
    file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn run(cli: Cli) -> Result<u8> {
    match cli.cmd {
        Cmd::Check {
            file,
            message_format,
        } => {
            let src = read(&file)?;
            let fe = check_source(&src);
            report(&file, &src, &fe.diagnostics, message_format);
            if has_errors(&fe.diagnostics) {
                return Ok(EXIT_DIAGNOSTICS);
            }
            if message_format == MessageFormat::Human {
                println!("{}: ok", file.display());
            }
            Ok(0)
        }
        Cmd::Build {
            file,
            target,
            out,
            message_format,
        } => {
            let src = read(&file)?;
            let fe = check_source(&src);
            let Some(program) = fe.program else {
                report(&file, &src, &fe.diagnostics, message_format);
                return Ok(EXIT_DIAGNOSTICS);
            };
            let mut targets = Vec::new();
            for t in target.split(',') {
                targets.push(Target::parse(t).ok_or_else(|| {
                    anyhow!("unknown target `{t}` (expected solidity, vyper or wasm)")
                })?);
            }
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let mut diags = fe.diagnostics.clone();
            let mut failed = false;
            for t in targets {
                match isthmus_transpiler::build(&program, t, &source_name(&file)) {
                    Ok(e) => {
                        let path = out.join(format!("{}.{}", program.name, t.extension()));
                        std::fs::write(&path, &e.code)
                            .with_context(|| format!("writing {}", path.display()))?;
                        let map = out.join(format!("{}.{}.map.json", program.name, t.extension()));
                        std::fs::write(&map, serde_json::to_vec_pretty(&e.source_map)?)?;
                        if message_format == MessageFormat::Human {
                            println!("wrote {}", path.display());
                        }
                    }
                    Err(d) => {
                        failed = true;
                        diags.extend(d);
                    }
                }
            }
            report(&file, &src, &diags, message_format);
            Ok(if failed { EXIT_DIAGNOSTICS } else { 0 })
        }
        Cmd::Audit {
            file,
            message_format,
            deny,
        } => {
            use isthmus_transpiler::audit::{audit_report, Severity};
            let src = read(&file)?;
            let fe = check_source(&src);
            let Some(program) = fe.program else {
                report(&file, &src, &fe.diagnostics, message_format);
                return Ok(EXIT_DIAGNOSTICS);
            };
            let report = audit_report(&program);
            let findings = &report.findings;
            let threshold = match deny {
                DenyLevel::Low => Severity::Low,
                DenyLevel::Medium => Severity::Medium,
                DenyLevel::High => Severity::High,
            };
            match message_format {
                MessageFormat::Json => println!(
                    "{}",
                    serde_json::json!({
                        "file": file.display().to_string(),
                        "findings": findings,
                        "acknowledged": report.acknowledged,
                    })
                ),
                MessageFormat::Human => {
                    for f in findings {
                        let (line, col) =
                            isthmus_transpiler::diag::line_col(&src, f.span.start as usize);
                        let sev = serde_json::to_value(f.severity)?;
                        println!(
                            "{}:{line}:{col}: {} {} [{}] {}",
                            file.display(),
                            sev.as_str().unwrap_or(""),
                            f.swc,
                            f.detector,
                            f.message
                        );
                    }
                    println!(
                        "{}: {} finding(s), {} acknowledged by @timelock",
                        file.display(),
                        findings.len(),
                        report.acknowledged.len()
                    );
                }
            }
            Ok(if findings.iter().any(|f| f.severity >= threshold) {
                EXIT_AUDIT
            } else {
                0
            })
        }
        Cmd::Test { files, vectors } => test(&files, vectors),
        Cmd::Bench {
            files,
            iterations,
            solc_runs,
        } => {
            let mut sources = Vec::new();
            for f in &files {
                sources.push((source_name(f), read(f)?));
            }
            print!("{}", bench::run(&sources, iterations, solc_runs)?);
            Ok(0)
        }
        Cmd::Debug {
            file,
            call,
            init,
            init_value,
            before,
            from,
            value,
            time,
        } => {
            let src = read(&file)?;
            let fe = check_source(&src);
            let Some(program) = fe.program else {
                report(&file, &src, &fe.diagnostics, MessageFormat::Human);
                return Ok(EXIT_DIAGNOSTICS);
            };
            let init_args: Vec<String> = init
                .split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect();
            let name = source_name(&file);
            let req = debug::Request {
                source: &src,
                source_name: &name,
                init_args: &init_args,
                init_value: &init_value,
                before: &before,
                call: &call,
                from: &from,
                value: &value,
                time,
            };
            print!("{}", debug::run(&program, &req)?);
            Ok(0)
        }
        Cmd::Fmt {
            files,
            write,
            check,
        } => {
            let mut unformatted = false;
            for file in &files {
                let src = read(file)?;
                let out = match isthmus_transpiler::fmt::format(&src) {
                    Ok(o) => o,
                    Err(d) => {
                        report(file, &src, &d, MessageFormat::Human);
                        return Ok(EXIT_DIAGNOSTICS);
                    }
                };
                if check {
                    if out != src {
                        eprintln!("{}: not formatted", file.display());
                        unformatted = true;
                    }
                } else if write {
                    if out != src {
                        std::fs::write(file, &out)
                            .with_context(|| format!("writing {}", file.display()))?;
                    }
                } else {
                    print!("{out}");
                }
            }
            Ok(if unformatted { EXIT_DIAGNOSTICS } else { 0 })
        }
    }
}

fn test(files: &[PathBuf], vectors: Option<PathBuf>) -> Result<u8> {
    if vectors.is_some() && files.len() != 1 {
        return Err(anyhow!("--vectors needs exactly one contract"));
    }
    let mut units = Vec::new();
    for file in files {
        let src = read(file)?;
        let fe = check_source(&src);
        let Some(program) = fe.program else {
            report(file, &src, &fe.diagnostics, MessageFormat::Human);
            return Ok(EXIT_DIAGNOSTICS);
        };
        let vpath = vectors.clone().unwrap_or_else(|| {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            file.with_file_name(format!("{stem}.vectors.toml"))
        });
        let vtext = read(&vpath)?;
        let v: vectors::Vectors =
            toml::from_str(&vtext).with_context(|| format!("parsing {}", vpath.display()))?;
        units.push((file, program, v));
    }
    let work = std::env::temp_dir().join(format!("xcl-test-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let named: Vec<_> = units.iter().map(|(f, p, _)| (p, source_name(f))).collect();
    let art = vectors::build_all(&named, &work);
    let _ = std::fs::remove_dir_all(&work);
    let art = art?;
    let (mut passed, mut failed) = (0, 0);
    for ((file, program, v), art) in units.iter().zip(&art) {
        let r = vectors::run(program, art, v)?;
        for l in &r.lines {
            println!("{l}");
        }
        println!(
            "{}: {} passed, {} failed",
            file.display(),
            r.passed,
            r.failed
        );
        passed += r.passed;
        failed += r.failed;
    }
    if files.len() > 1 {
        println!(
            "total: {} contract(s), {passed} passed, {failed} failed",
            files.len()
        );
    }
    Ok(if failed > 0 { EXIT_TESTS } else { 0 })
}
