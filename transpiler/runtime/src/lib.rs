//! Reference host for the XCL Wasm ABI (`transpiler/HOST-ABI.md`), on wasmi with fuel
//! metering. The hub's contract runtime implements the same imports; this crate is what the
//! transpiler's tests and `xcl test`/`xcl debug` run contracts on. It keeps world state in
//! memory only and must never touch files, sockets or clocks: time and height come from the
//! caller.

use ruint::aliases::U256;
use sha2::Digest;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use wasmi::{Caller, Config, Engine, Extern, Linker, Module, Store};

pub type Word = [u8; 32];

/// Operation codes; they must match `isthmus_transpiler::emit::wasm::abi`.
mod op {
    pub const ADD: i32 = 0;
    pub const SUB: i32 = 1;
    pub const MUL: i32 = 2;
    pub const DIV: i32 = 3;
    pub const REM: i32 = 4;
    pub const WRAP: i32 = 8;
}

/// Fuel charged for host calls, on top of wasmi's per-instruction fuel.
const FUEL_STORAGE: u64 = 100;
const FUEL_HASH: u64 = 60;
const FUEL_MATH: u64 = 5;
const FUEL_TRANSFER: u64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid wasm module: {0}")]
    InvalidModule(String),
    #[error("export `{0}` not found")]
    NoSuchExport(String),
}

/// How a call ended, in the classes `xcl test` compares across targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Success,
    /// `require`/`revert` with a message.
    Revert(String),
    /// A failed runtime check; 0 means "no code" (ABI errors, value to a non-payable entry,
    /// the reentrancy lock), others are Solidity's panic codes.
    Panic(u32),
    OutOfFuel,
    /// A Wasm trap that no well-formed XCL program produces (a bug if ever seen).
    Trap(String),
}

#[derive(Debug)]
enum Abort {
    Revert(String),
    Panic(u32),
    OutOfFuel,
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Abort::Revert(m) => write!(f, "revert: {m}"),
            Abort::Panic(c) => write!(f, "panic 0x{c:02x}"),
            Abort::OutOfFuel => f.write_str("out of fuel"),
        }
    }
}

impl wasmi::errors::HostError for Abort {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: Vec<u8>,
}

/// One `trace` call in a debug build: statement id, frame base and the live stack bytes.
#[derive(Clone, Debug)]
pub struct TraceStep {
    pub stmt: u32,
    pub base: u32,
    pub stack: Vec<u8>,
    pub storage: BTreeMap<Word, Word>,
}

/// Accounts, balances and contract storage: everything a call can change.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub balances: HashMap<Word, U256>,
    pub storage: HashMap<Word, BTreeMap<Word, Word>>,
    /// Accounts that call back into the paying contract when they receive value.
    pub hooks: HashMap<Word, Reentry>,
}

/// A test account that, while armed, answers an incoming transfer by calling `entry` with
/// `input` on the contract that paid it, once (it disarms itself first). If that call
/// fails, the account refuses the transfer, as an EVM contract whose `receive` reverts
/// would. This is how `xcl test` attempts reentrancy on the Wasm target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reentry {
    pub entry: String,
    pub input: Vec<u8>,
    pub armed: bool,
}

impl World {
    pub fn balance(&self, a: &Word) -> U256 {
        self.balances.get(a).copied().unwrap_or(U256::ZERO)
    }
}

#[derive(Clone, Debug)]
pub struct CallEnv {
    pub caller: Word,
    pub contract: Word,
    pub value: U256,
    pub time: u64,
    pub height: u64,
    pub fuel: u64,
}

#[derive(Clone, Debug)]
pub struct CallResult {
    pub status: Status,
    pub return_data: Vec<u8>,
    pub events: Vec<Event>,
    pub fuel_used: u64,
    pub trace: Vec<TraceStep>,
    /// In traced calls, the input of every keccak256 the contract computed, by digest, so a
    /// debugger can name map entries (whose storage keys are such digests).
    pub preimages: HashMap<Word, Vec<u8>>,
}

struct Host {
    module: Module,
    world: World,
    env: CallEnv,
    input: Vec<u8>,
    ret: Vec<u8>,
    events: Vec<Event>,
    trace: Option<Vec<TraceStep>>,
    preimages: HashMap<Word, Vec<u8>>,
}

pub struct Runtime {
    engine: Engine,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

fn err(a: Abort) -> wasmi::Error {
    wasmi::Error::host(a)
}

fn memory(c: &Caller<'_, Host>) -> Result<wasmi::Memory, wasmi::Error> {
    c.get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| wasmi::Error::new("module exports no memory"))
}

fn read(c: &Caller<'_, Host>, ptr: i32, len: i32) -> Result<Vec<u8>, wasmi::Error> {
    let m = memory(c)?;
    let mut buf = vec![0u8; usize::try_from(len).map_err(|_| wasmi::Error::new("bad length"))?];
    m.read(c, ptr as u32 as usize, &mut buf)
        .map_err(|e| wasmi::Error::new(e.to_string()))?;
    Ok(buf)
}

fn word(c: &Caller<'_, Host>, ptr: i32) -> Result<Word, wasmi::Error> {
    let v = read(c, ptr, 32)?;
    let mut w = [0u8; 32];
    w.copy_from_slice(&v);
    Ok(w)
}

fn write(c: &mut Caller<'_, Host>, ptr: i32, data: &[u8]) -> Result<(), wasmi::Error> {
    let m = memory(c)?;
    m.write(c, ptr as u32 as usize, data)
        .map_err(|e| wasmi::Error::new(e.to_string()))
}

fn charge(c: &mut Caller<'_, Host>, fuel: u64) -> Result<(), wasmi::Error> {
    let left = c.get_fuel()?;
    if left < fuel {
        c.set_fuel(0)?;
        return Err(err(Abort::OutOfFuel));
    }
    c.set_fuel(left - fuel)
}

fn u(w: &Word) -> U256 {
    U256::from_be_bytes(*w)
}

fn max_of(bits: i32) -> U256 {
    if bits >= 256 {
        U256::MAX
    } else {
        (U256::from(1u8) << (bits as usize)) - U256::from(1u8)
    }
}

/// The 256-bit arithmetic behind XCL's `+ - * / %` and their wrapping forms.
pub fn arith(opcode: i32, bits: i32, a: U256, b: U256) -> Result<U256, u32> {
    let max = max_of(bits);
    let wrap = opcode & op::WRAP != 0;
    let r = match opcode & !op::WRAP {
        op::ADD => {
            let (r, o) = a.overflowing_add(b);
            if !wrap && (o || r > max) {
                return Err(0x11);
            }
            r & max
        }
        op::SUB => {
            if !wrap && a < b {
                return Err(0x11);
            }
            a.wrapping_sub(b) & max
        }
        op::MUL => match a.checked_mul(b) {
            Some(r) if r <= max => r,
            _ if wrap => a.wrapping_mul(b) & max,
            _ => return Err(0x11),
        },
        op::DIV => a.checked_div(b).ok_or(0x12u32)?,
        op::REM => a.checked_rem(b).ok_or(0x12u32)?,
        _ => return Err(0x01),
    };
    Ok(r)
}

impl Runtime {
    pub fn new() -> Runtime {
        let mut config = Config::default();
        config.consume_fuel(true);
        Runtime {
            engine: Engine::new(&config),
        }
    }

    /// Validates and compiles a module.
    pub fn load(&self, wasm: &[u8]) -> Result<Module, RuntimeError> {
        Module::new(&self.engine, wasm).map_err(|e| RuntimeError::InvalidModule(e.to_string()))
    }
}

fn linker(engine: &Engine) -> Result<Linker<Host>, wasmi::Error> {
    {
        let mut l = Linker::<Host>::new(engine);
        l.func_wrap(
            "xcl",
            "input",
            |mut c: Caller<'_, Host>, idx: i32, kind: i32, out: i32| -> Result<(), wasmi::Error> {
                let start = (idx as u32 as usize) * 32;
                let Some(bytes) = c.data().input.get(start..start + 32) else {
                    return Err(err(Abort::Panic(0)));
                };
                let mut w = [0u8; 32];
                w.copy_from_slice(bytes);
                let ok = match kind {
                    0 => true,
                    1 => u(&w) <= U256::from(1u8),
                    bits => u(&w) <= max_of(bits),
                };
                if !ok {
                    return Err(err(Abort::Panic(0)));
                }
                write(&mut c, out, &w)
            },
        )?;
        l.func_wrap(
            "xcl",
            "ret",
            |mut c: Caller<'_, Host>, ptr: i32, len: i32| -> Result<(), wasmi::Error> {
                let data = read(&c, ptr, len)?;
                c.data_mut().ret = data;
                Ok(())
            },
        )?;
        l.func_wrap(
            "xcl",
            "revert",
            |c: Caller<'_, Host>, ptr: i32, len: i32| -> Result<(), wasmi::Error> {
                let msg = String::from_utf8_lossy(&read(&c, ptr, len)?).into_owned();
                Err(err(Abort::Revert(msg)))
            },
        )?;
        l.func_wrap(
            "xcl",
            "panic",
            |_c: Caller<'_, Host>, code: i32| -> Result<(), wasmi::Error> {
                Err(err(Abort::Panic(code as u32)))
            },
        )?;
        l.func_wrap(
            "xcl",
            "sload",
            |mut c: Caller<'_, Host>, key: i32, out: i32| -> Result<(), wasmi::Error> {
                charge(&mut c, FUEL_STORAGE)?;
                let k = word(&c, key)?;
                let h = c.data();
                let v = h
                    .world
                    .storage
                    .get(&h.env.contract)
                    .and_then(|s| s.get(&k))
                    .copied()
                    .unwrap_or([0; 32]);
                write(&mut c, out, &v)
            },
        )?;
        l.func_wrap(
            "xcl",
            "sstore",
            |mut c: Caller<'_, Host>, key: i32, val: i32| -> Result<(), wasmi::Error> {
                charge(&mut c, FUEL_STORAGE)?;
                let (k, v) = (word(&c, key)?, word(&c, val)?);
                let h = c.data_mut();
                let s = h.world.storage.entry(h.env.contract).or_default();
                if v == [0; 32] {
                    s.remove(&k);
                } else {
                    s.insert(k, v);
                }
                Ok(())
            },
        )?;
        l.func_wrap(
            "xcl",
            "env",
            |mut c: Caller<'_, Host>, which: i32, out: i32| -> Result<(), wasmi::Error> {
                let h = c.data();
                let w: Word = match which {
                    0 => h.env.caller,
                    1 => h.env.value.to_be_bytes(),
                    2 => U256::from(h.env.time).to_be_bytes(),
                    3 => U256::from(h.env.height).to_be_bytes(),
                    _ => h.world.balance(&h.env.contract).to_be_bytes(),
                };
                write(&mut c, out, &w)
            },
        )?;
        l.func_wrap(
            "xcl",
            "hash",
            |mut c: Caller<'_, Host>,
             kind: i32,
             ptr: i32,
             len: i32,
             out: i32|
             -> Result<(), wasmi::Error> {
                charge(&mut c, FUEL_HASH)?;
                let data = read(&c, ptr, len)?;
                let h: Word = if kind == 0 {
                    sha2::Sha256::digest(&data).into()
                } else {
                    sha3::Keccak256::digest(&data).into()
                };
                if kind != 0 && c.data().trace.is_some() {
                    c.data_mut().preimages.insert(h, data);
                }
                write(&mut c, out, &h)
            },
        )?;
        l.func_wrap(
            "xcl",
            "emit",
            |mut c: Caller<'_, Host>,
             name: i32,
             nlen: i32,
             data: i32,
             dlen: i32|
             -> Result<(), wasmi::Error> {
                let n = String::from_utf8_lossy(&read(&c, name, nlen)?).into_owned();
                let d = read(&c, data, dlen)?;
                c.data_mut().events.push(Event { name: n, data: d });
                Ok(())
            },
        )?;
        l.func_wrap(
            "xcl",
            "xsend",
            |mut c: Caller<'_, Host>, ptr: i32| -> Result<(), wasmi::Error> {
                let d = read(&c, ptr, 96)?;
                c.data_mut().events.push(Event {
                    name: "XclSend".into(),
                    data: d,
                });
                Ok(())
            },
        )?;
        l.func_wrap(
            "xcl",
            "transfer",
            |mut c: Caller<'_, Host>, to: i32, amount: i32| -> Result<i32, wasmi::Error> {
                charge(&mut c, FUEL_TRANSFER)?;
                let (t, a) = (word(&c, to)?, u(&word(&c, amount)?));
                // Native addresses are 20 bytes, left-padded, as on the EVM targets.
                if t[..12].iter().any(|b| *b != 0) {
                    return Err(err(Abort::Panic(0x01)));
                }
                let h = c.data_mut();
                let from = h.env.contract;
                let have = h.world.balance(&from);
                // Contracts have no receive hook, so they refuse value, as on the EVM targets.
                if have < a || h.world.storage.contains_key(&t) {
                    return Ok(0);
                }
                let before = h.world.clone();
                h.world.balances.insert(from, have - a);
                let dest = h.world.balance(&t);
                h.world.balances.insert(t, dest + a);
                let Some(hook) = h.world.hooks.get_mut(&t).filter(|k| k.armed) else {
                    return Ok(1);
                };
                hook.armed = false;
                let (entry, input) = (hook.entry.clone(), hook.input.clone());
                let env = CallEnv {
                    caller: t,
                    value: U256::ZERO,
                    fuel: c.get_fuel()?,
                    ..c.data().env.clone()
                };
                let (engine, module) = (c.engine().clone(), c.data().module.clone());
                let mut world = c.data().world.clone();
                let r = execute(&engine, &module, &mut world, &entry, &input, &env, false);
                charge(&mut c, r.fuel_used)?;
                let h = c.data_mut();
                if r.status == Status::Success {
                    h.world = world;
                    h.events.extend(r.events);
                    Ok(1)
                } else {
                    h.world = before;
                    Ok(0)
                }
            },
        )?;
        l.func_wrap(
            "xcl",
            "arith",
            |mut c: Caller<'_, Host>,
             opcode: i32,
             bits: i32,
             a: i32,
             b: i32,
             out: i32|
             -> Result<(), wasmi::Error> {
                charge(&mut c, FUEL_MATH)?;
                let (x, y) = (u(&word(&c, a)?), u(&word(&c, b)?));
                let r = arith(opcode, bits, x, y).map_err(|code| err(Abort::Panic(code)))?;
                write(&mut c, out, &r.to_be_bytes::<32>())
            },
        )?;
        l.func_wrap(
            "xcl",
            "cmp",
            |mut c: Caller<'_, Host>, opcode: i32, a: i32, b: i32| -> Result<i32, wasmi::Error> {
                charge(&mut c, FUEL_MATH)?;
                let (x, y) = (word(&c, a)?, word(&c, b)?);
                // Big-endian byte order is numeric order.
                let r = match opcode {
                    0 => x == y,
                    1 => x != y,
                    2 => x < y,
                    3 => x <= y,
                    4 => x > y,
                    _ => x >= y,
                };
                Ok(i32::from(r))
            },
        )?;
        l.func_wrap(
            "xcl",
            "resize",
            |mut c: Caller<'_, Host>, bits: i32, a: i32, out: i32| -> Result<(), wasmi::Error> {
                let w = word(&c, a)?;
                if u(&w) > max_of(bits) {
                    return Err(err(Abort::Panic(0x11)));
                }
                write(&mut c, out, &w)
            },
        )?;
        l.func_wrap(
            "xcl",
            "trace",
            |c: Caller<'_, Host>, stmt: i32, base: i32| -> Result<(), wasmi::Error> {
                if c.data().trace.is_none() {
                    return Ok(());
                }
                let m = memory(&c)?;
                let top = m.data(&c).len();
                let b = (base as u32 as usize).min(top);
                let stack = m.data(&c)[b..top].to_vec();
                let h = c.data();
                let storage = h
                    .world
                    .storage
                    .get(&h.env.contract)
                    .cloned()
                    .unwrap_or_default();
                let mut c = c;
                if let Some(t) = c.data_mut().trace.as_mut() {
                    t.push(TraceStep {
                        stmt: stmt as u32,
                        base: base as u32,
                        stack,
                        storage,
                    });
                }
                Ok(())
            },
        )?;
        Ok(l)
    }
}

impl Runtime {
    /// Runs export `entry` of `module` as contract `env.contract`. Value moves from the caller
    /// to the contract first; on any failure the world is left exactly as it was.
    pub fn call(
        &self,
        module: &Module,
        world: &mut World,
        entry: &str,
        input: &[u8],
        env: &CallEnv,
        trace: bool,
    ) -> Result<CallResult, RuntimeError> {
        if module.get_export(entry).is_none() {
            return Err(RuntimeError::NoSuchExport(entry.to_string()));
        }
        Ok(execute(
            &self.engine,
            module,
            world,
            entry,
            input,
            env,
            trace,
        ))
    }
}

fn execute(
    engine: &Engine,
    module: &Module,
    world: &mut World,
    entry: &str,
    input: &[u8],
    env: &CallEnv,
    trace: bool,
) -> CallResult {
    let mut w = world.clone();
    let from = w.balance(&env.caller);
    if from < env.value {
        return CallResult {
            status: Status::Trap("caller cannot pay the value".into()),
            return_data: Vec::new(),
            events: Vec::new(),
            fuel_used: 0,
            trace: Vec::new(),
            preimages: HashMap::new(),
        };
    }
    w.balances.insert(env.caller, from - env.value);
    let to = w.balance(&env.contract);
    w.balances.insert(env.contract, to + env.value);
    w.storage.entry(env.contract).or_default();
    let host = Host {
        module: module.clone(),
        world: w,
        env: env.clone(),
        input: input.to_vec(),
        ret: Vec::new(),
        events: Vec::new(),
        trace: trace.then(Vec::new),
        preimages: HashMap::new(),
    };
    let mut store = Store::new(engine, host);
    let result = (|| -> Result<(), wasmi::Error> {
        store.set_fuel(env.fuel)?;
        let linker = linker(engine)?;
        let instance = linker.instantiate_and_start(&mut store, module)?;
        let f = instance.get_typed_func::<(), ()>(&store, entry)?;
        f.call(&mut store, ())
    })();
    let fuel_used = env.fuel - store.get_fuel().unwrap_or(0);
    let status = match result {
        Ok(()) => Status::Success,
        Err(e) => {
            if let Some(a) = e.downcast_ref::<Abort>() {
                match a {
                    Abort::Revert(m) => Status::Revert(m.clone()),
                    Abort::Panic(c) => Status::Panic(*c),
                    Abort::OutOfFuel => Status::OutOfFuel,
                }
            } else if e.as_trap_code() == Some(wasmi::TrapCode::OutOfFuel) {
                Status::OutOfFuel
            } else {
                Status::Trap(e.to_string())
            }
        }
    };
    let host = store.into_data();
    let ok = status == Status::Success;
    if ok {
        *world = host.world;
    }
    CallResult {
        status,
        return_data: if ok { host.ret } else { Vec::new() },
        events: if ok { host.events } else { Vec::new() },
        fuel_used,
        trace: host.trace.unwrap_or_default(),
        preimages: host.preimages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_and_wrapping_arith() {
        let m = |x: u64| U256::from(x);
        assert_eq!(arith(op::ADD, 8, m(200), m(55)), Ok(m(255)));
        assert_eq!(arith(op::ADD, 8, m(200), m(56)), Err(0x11));
        assert_eq!(arith(op::ADD | op::WRAP, 8, m(200), m(56)), Ok(m(0)));
        assert_eq!(arith(op::SUB, 64, m(1), m(2)), Err(0x11));
        assert_eq!(arith(op::SUB | op::WRAP, 64, m(1), m(2)), Ok(m(u64::MAX)));
        assert_eq!(arith(op::MUL, 256, U256::MAX, m(2)), Err(0x11));
        assert_eq!(arith(op::DIV, 256, m(1), m(0)), Err(0x12));
        assert_eq!(arith(op::REM, 256, m(7), m(4)), Ok(m(3)));
    }
}
