//! The Wasm backend for the hub's VM, written with `wasm-encoder`.
//!
//! Every XCL value is a 32-byte big-endian word in linear memory, the same layout as an EVM
//! word, so calldata, return data, storage, events and hashes need no conversion. Each call
//! gets a fresh instance; a function's frame is carved from a stack that grows down from the
//! top of memory. 256-bit arithmetic and comparisons are host functions (module `xcl`, see
//! `HOST-ABI.md`), which the runtime implements with the same checked semantics as the EVM
//! targets.

use super::{Emitted, MapEntry};
use crate::diag::Span;
use crate::ir::*;
use crate::word::Word;
use std::collections::HashMap;
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, CustomSection, DataSection, EntityType, ExportKind,
    ExportSection, Function as WFunction, FunctionSection, GlobalSection, GlobalType,
    ImportSection, Instruction as I, MemArg, MemorySection, MemoryType, Module, TypeSection,
    ValType,
};

/// The host imports, in index order: (name, parameter count, returns an i32).
pub const IMPORTS: &[(&str, u32, bool)] = &[
    ("input", 3, false),
    ("ret", 2, false),
    ("revert", 2, false),
    ("panic", 1, false),
    ("sload", 2, false),
    ("sstore", 2, false),
    ("env", 2, false),
    ("hash", 4, false),
    ("emit", 4, false),
    ("xsend", 1, false),
    ("transfer", 2, true),
    ("arith", 5, false),
    ("cmp", 3, true),
    ("resize", 3, false),
    ("trace", 2, false),
];
const F_INPUT: u32 = 0;
const F_RET: u32 = 1;
const F_REVERT: u32 = 2;
const F_PANIC: u32 = 3;
const F_SLOAD: u32 = 4;
const F_SSTORE: u32 = 5;
const F_ENV: u32 = 6;
const F_HASH: u32 = 7;
const F_EMIT: u32 = 8;
const F_XSEND: u32 = 9;
const F_TRANSFER: u32 = 10;
const F_ARITH: u32 = 11;
const F_CMP: u32 = 12;
const F_RESIZE: u32 = 13;
const F_TRACE: u32 = 14;

/// Memory is fixed at this many 64 KiB pages; the stack starts at its top.
pub const PAGES: u64 = 4;
const DATA_BASE: u32 = 1024;
/// The storage key of the reentrancy lock: all ones, which no variable's key can be.
pub const LOCK_KEY: [u8; 32] = [0xff; 32];

pub mod abi {
    //! Operation codes shared with the host runtime.
    pub const ARITH_ADD: i32 = 0;
    pub const ARITH_SUB: i32 = 1;
    pub const ARITH_MUL: i32 = 2;
    pub const ARITH_DIV: i32 = 3;
    pub const ARITH_REM: i32 = 4;
    /// Or-ed into the operation: wrap instead of panicking on overflow.
    pub const ARITH_WRAP: i32 = 8;
    pub const CMP_EQ: i32 = 0;
    pub const CMP_NE: i32 = 1;
    pub const CMP_LT: i32 = 2;
    pub const CMP_LE: i32 = 3;
    pub const CMP_GT: i32 = 4;
    pub const CMP_GE: i32 = 5;
    pub const ENV_SENDER: i32 = 0;
    pub const ENV_VALUE: i32 = 1;
    pub const ENV_NOW: i32 = 2;
    pub const ENV_HEIGHT: i32 = 3;
    pub const ENV_BALANCE: i32 = 4;
    pub const HASH_SHA256: i32 = 0;
    pub const HASH_KECCAK256: i32 = 1;
    /// `input` kind for words that need no range check (bytes32, address).
    pub const INPUT_RAW: i32 = 0;
    /// `input` kind for booleans (0 or 1).
    pub const INPUT_BOOL: i32 = 1;
}
use abi::*;

/// Where a debugger finds things: per function, local names and frame offsets; per traced
/// statement, its function and span.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DebugInfo {
    pub functions: Vec<DebugFunction>,
    pub statements: Vec<(usize, Span)>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DebugFunction {
    pub name: String,
    pub locals: Vec<(String, u32)>,
}

pub fn emit(p: &Program, source_name: &str) -> Emitted {
    emit_with(p, source_name, false).0
}

/// `debug`: call the host's `trace(statement, frame)` before each statement.
pub fn emit_with(p: &Program, source_name: &str, debug: bool) -> (Emitted, DebugInfo) {
    let mut g = Gen {
        p,
        data: Vec::new(),
        consts: HashMap::new(),
        strings: HashMap::new(),
        debug,
        info: DebugInfo::default(),
    };
    g.module(source_name)
}

struct Gen<'a> {
    p: &'a Program,
    data: Vec<u8>,
    consts: HashMap<Word, u32>,
    strings: HashMap<String, (u32, u32)>,
    debug: bool,
    info: DebugInfo,
}

#[derive(Clone, Copy)]
enum Loc {
    Frame(u32),
    Static(u32),
}

fn mem(offset: u64) -> MemArg {
    MemArg {
        offset,
        align: 0,
        memory_index: 0,
    }
}

fn var_key(v: VarId) -> Word {
    let mut w = Word::ZERO;
    w.0[..4].copy_from_slice(&(v as u32 + 1).to_be_bytes());
    w
}

struct FnGen {
    code: Vec<I<'static>>,
    frame: u32,
    depth: u32,
    slots: HashMap<LocalId, u32>,
    base: u32,
    out: Option<u32>,
}

impl FnGen {
    fn alloc(&mut self, bytes: u32) -> u32 {
        let off = self.frame;
        self.frame += bytes;
        off
    }
    fn temp(&mut self) -> Loc {
        Loc::Frame(self.alloc(32))
    }
    fn push(&mut self, i: I<'static>) {
        self.code.push(i);
    }
    fn addr(&mut self, l: Loc) {
        match l {
            Loc::Frame(off) => {
                self.push(I::LocalGet(self.base));
                self.push(I::I32Const(off as i32));
                self.push(I::I32Add);
            }
            Loc::Static(a) => self.push(I::I32Const(a as i32)),
        }
    }
    fn copy(&mut self, dst: Loc, src: Loc) {
        for k in 0..4u64 {
            self.addr(dst);
            self.addr(src);
            self.push(I::I64Load(mem(k * 8)));
            self.push(I::I64Store(mem(k * 8)));
        }
    }
    fn copy_to_addr_plus(&mut self, dst: Loc, extra: u64, src: Loc) {
        for k in 0..4u64 {
            self.addr(dst);
            self.addr(src);
            self.push(I::I64Load(mem(k * 8)));
            self.push(I::I64Store(mem(extra + k * 8)));
        }
    }
    fn zero(&mut self, dst: Loc) {
        for k in 0..4u64 {
            self.addr(dst);
            self.push(I::I64Const(0));
            self.push(I::I64Store(mem(k * 8)));
        }
    }
    /// Pushes 1 if the bool word at `l` is true.
    fn truthy(&mut self, l: Loc) {
        self.addr(l);
        self.push(I::I32Load8U(mem(31)));
    }
    fn call(&mut self, f: u32) {
        self.push(I::Call(f));
    }
}

impl Gen<'_> {
    fn constant(&mut self, w: Word) -> Loc {
        if let Some(a) = self.consts.get(&w) {
            return Loc::Static(*a);
        }
        let a = DATA_BASE + self.data.len() as u32;
        self.data.extend_from_slice(&w.0);
        self.consts.insert(w, a);
        Loc::Static(a)
    }

    fn string(&mut self, s: &str) -> (u32, u32) {
        if let Some(x) = self.strings.get(s) {
            return *x;
        }
        let a = DATA_BASE + self.data.len() as u32;
        self.data.extend_from_slice(s.as_bytes());
        let r = (a, s.len() as u32);
        self.strings.insert(s.to_string(), r);
        r
    }

    fn module(&mut self, source_name: &str) -> (Emitted, DebugInfo) {
        let p = self.p;
        let mut types = TypeSection::new();
        let mut type_ids: HashMap<(u32, bool), u32> = HashMap::new();
        let mut ty = |n: u32, r: bool, types: &mut TypeSection| -> u32 {
            *type_ids.entry((n, r)).or_insert_with(|| {
                let id = types.len();
                let results: Vec<ValType> = if r { vec![ValType::I32] } else { vec![] };
                types.ty().function(vec![ValType::I32; n as usize], results);
                id
            })
        };
        let mut imports = ImportSection::new();
        for (name, n, r) in IMPORTS {
            let t = ty(*n, *r, &mut types);
            imports.import("xcl", name, EntityType::Function(t));
        }
        let nimports = IMPORTS.len() as u32;
        let mut functions = FunctionSection::new();
        let mut code = CodeSection::new();
        let mut exports = ExportSection::new();
        exports.export("memory", ExportKind::Memory, 0);
        let mut source_map = Vec::new();
        // Bodies: one internal function per XCL function, taking pointers to its arguments and
        // (if it returns) a pointer to write the result to.
        for (i, f) in p.functions.iter().enumerate() {
            let n = f.params.len() as u32 + u32::from(f.ret.is_some());
            functions.function(ty(n, false, &mut types));
            let body = self.body(i, f, &mut source_map);
            code.function(&body);
        }
        let mut next = nimports + p.functions.len() as u32;
        // Entry points: decode calldata, check value and the lock, call the body, return.
        for (i, f) in p.functions.iter().enumerate() {
            if !f.public {
                continue;
            }
            functions.function(ty(0, false, &mut types));
            let w = self.entry(i, f, nimports);
            code.function(&w);
            let name = if f.is_init { "init" } else { f.name.as_str() };
            exports.export(name, ExportKind::Func, next);
            next += 1;
        }
        for (v, s) in p.storage.iter().enumerate() {
            if !s.public {
                continue;
            }
            functions.function(ty(0, false, &mut types));
            let w = self.getter(v);
            code.function(&w);
            exports.export(&s.name, ExportKind::Func, next);
            next += 1;
        }
        let mut memories = MemorySection::new();
        memories.memory(MemoryType {
            minimum: PAGES,
            maximum: Some(PAGES),
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        let mut globals = GlobalSection::new();
        globals.global(
            GlobalType {
                val_type: ValType::I32,
                mutable: true,
                shared: false,
            },
            &ConstExpr::i32_const((PAGES * 65536) as i32),
        );
        let mut data = DataSection::new();
        data.active(
            0,
            &ConstExpr::i32_const(DATA_BASE as i32),
            self.data.clone(),
        );
        let mut module = Module::new();
        let header = format!("generated by xcl from {source_name}");
        module.section(&CustomSection {
            name: "xcl.source".into(),
            data: header.as_bytes().into(),
        });
        module
            .section(&types)
            .section(&imports)
            .section(&functions)
            .section(&memories)
            .section(&globals)
            .section(&exports)
            .section(&code)
            .section(&data);
        let map_json = serde_json::to_vec(&source_map).unwrap_or_default();
        module.section(&CustomSection {
            name: "xcl.sourcemap".into(),
            data: map_json.into(),
        });
        (
            Emitted {
                code: module.finish(),
                source_map,
            },
            std::mem::take(&mut self.info),
        )
    }

    fn prologue(fg: &FnGen) -> Vec<I<'static>> {
        let frame = (fg.frame + 7) & !7;
        vec![
            I::GlobalGet(0),
            I::I32Const(frame as i32),
            I::I32Sub,
            I::LocalTee(fg.base),
            I::GlobalSet(0),
        ]
    }

    fn finish(fg: FnGen, nparams: u32) -> WFunction {
        let mut f = WFunction::new(vec![(1 + fg.base - nparams, ValType::I32)]);
        let frame = (fg.frame + 7) & !7;
        for i in Self::prologue(&fg) {
            f.instruction(&i);
        }
        for i in &fg.code {
            f.instruction(i);
        }
        for i in [
            I::LocalGet(fg.base),
            I::I32Const(frame as i32),
            I::I32Add,
            I::GlobalSet(0),
            I::End,
        ] {
            f.instruction(&i);
        }
        f
    }

    fn body(&mut self, idx: usize, f: &Function, map: &mut Vec<MapEntry>) -> WFunction {
        let nparams = f.params.len() as u32 + u32::from(f.ret.is_some());
        let mut fg = FnGen {
            code: Vec::new(),
            frame: 0,
            depth: 0,
            slots: HashMap::new(),
            base: nparams,
            out: f.ret.as_ref().map(|_| f.params.len() as u32),
        };
        let mut dbg = DebugFunction {
            name: f.name.clone(),
            locals: Vec::new(),
        };
        for (l, d) in f.locals.iter().enumerate() {
            let off = fg.alloc(32);
            fg.slots.insert(l, off);
            dbg.locals.push((d.name.clone(), off));
        }
        // Copy arguments into the frame, so every local lives at a known frame offset.
        for (i, &l) in f.params.iter().enumerate() {
            let off = fg.slots[&l];
            for k in 0..4u64 {
                fg.addr(Loc::Frame(off));
                fg.push(I::LocalGet(i as u32));
                fg.push(I::I64Load(mem(k * 8)));
                fg.push(I::I64Store(mem(k * 8)));
            }
        }
        self.info.functions.push(dbg);
        fg.push(I::Block(BlockType::Empty));
        fg.depth = 1;
        let _ = idx;
        self.stmts(&mut fg, &f.body, f, map);
        fg.push(I::End);
        Self::finish(fg, nparams)
    }

    fn stmts(&mut self, fg: &mut FnGen, stmts: &[Stmt], f: &Function, map: &mut Vec<MapEntry>) {
        for s in stmts {
            self.stmt(fg, s, f, map);
        }
    }

    fn stmt(&mut self, fg: &mut FnGen, s: &Stmt, f: &Function, map: &mut Vec<MapEntry>) {
        let id = self.info.statements.len();
        self.info
            .statements
            .push((self.info.functions.len().saturating_sub(1), s.span));
        map.push(MapEntry {
            out: id as u32,
            start: s.span.start,
            end: s.span.end,
        });
        if self.debug {
            fg.push(I::I32Const(id as i32));
            fg.push(I::LocalGet(fg.base));
            fg.call(F_TRACE);
        }
        match &s.kind {
            StmtKind::Let { local, value } => {
                let v = self.expr(fg, value);
                let dst = Loc::Frame(fg.slots[local]);
                fg.copy(dst, v);
            }
            StmtKind::Assign { place, value } => {
                let v = self.expr(fg, value);
                match place {
                    Place::Local(l) => {
                        let dst = Loc::Frame(fg.slots[l]);
                        fg.copy(dst, v);
                    }
                    Place::Storage(p) => {
                        let key = self.key(fg, p);
                        fg.addr(key);
                        fg.addr(v);
                        fg.call(F_SSTORE);
                    }
                }
            }
            StmtKind::If { cond, then, els } => {
                let c = self.expr(fg, cond);
                fg.truthy(c);
                fg.push(I::If(BlockType::Empty));
                fg.depth += 1;
                self.stmts(fg, then, f, map);
                if !els.is_empty() {
                    fg.push(I::Else);
                    self.stmts(fg, els, f, map);
                }
                fg.depth -= 1;
                fg.push(I::End);
            }
            StmtKind::For {
                var,
                start,
                end,
                bound,
                body,
            } => {
                let bits = f.locals[*var].ty.uint_bits().unwrap_or(256);
                let s0 = self.expr(fg, start);
                let e0 = self.expr(fg, end);
                let iv = Loc::Frame(fg.slots[var]);
                let ev = fg.temp();
                fg.copy(ev, e0);
                fg.copy(iv, s0);
                // start > end, or more iterations than the bound: panic 0x01, as on the EVM.
                let (b, check) = super::vyper::effective_bound(bound, bits);
                fg.push(I::I32Const(CMP_GT));
                fg.addr(iv);
                fg.addr(ev);
                fg.call(F_CMP);
                if check {
                    let diff = fg.temp();
                    fg.push(I::I32Const(ARITH_SUB | ARITH_WRAP));
                    fg.push(I::I32Const(256));
                    fg.addr(ev);
                    fg.addr(iv);
                    fg.addr(diff);
                    fg.call(F_ARITH);
                    let bl = self.constant(b);
                    fg.push(I::I32Const(CMP_GT));
                    fg.addr(diff);
                    fg.addr(bl);
                    fg.call(F_CMP);
                    fg.push(I::I32Or);
                }
                fg.push(I::If(BlockType::Empty));
                fg.push(I::I32Const(1));
                fg.call(F_PANIC);
                fg.push(I::End);
                let one = self.constant(Word::from_u64(1));
                fg.push(I::Block(BlockType::Empty));
                fg.push(I::Loop(BlockType::Empty));
                fg.depth += 2;
                fg.push(I::I32Const(CMP_LT));
                fg.addr(iv);
                fg.addr(ev);
                fg.call(F_CMP);
                fg.push(I::I32Eqz);
                fg.push(I::BrIf(1));
                self.stmts(fg, body, f, map);
                fg.push(I::I32Const(ARITH_ADD | ARITH_WRAP));
                fg.push(I::I32Const(i32::from(bits)));
                fg.addr(iv);
                fg.addr(one);
                fg.addr(iv);
                fg.call(F_ARITH);
                fg.push(I::Br(0));
                fg.depth -= 2;
                fg.push(I::End);
                fg.push(I::End);
            }
            StmtKind::Require { cond, message } => {
                let c = self.expr(fg, cond);
                fg.truthy(c);
                fg.push(I::I32Eqz);
                fg.push(I::If(BlockType::Empty));
                let (a, n) = self.string(message);
                fg.push(I::I32Const(a as i32));
                fg.push(I::I32Const(n as i32));
                fg.call(F_REVERT);
                fg.push(I::End);
            }
            StmtKind::Revert { message } => {
                let (a, n) = self.string(message);
                fg.push(I::I32Const(a as i32));
                fg.push(I::I32Const(n as i32));
                fg.call(F_REVERT);
            }
            StmtKind::Emit { event, args } => {
                let buf = self.pack(fg, args);
                let (a, n) = self.string(&self.p.events[*event].name.clone());
                fg.push(I::I32Const(a as i32));
                fg.push(I::I32Const(n as i32));
                fg.addr(buf);
                fg.push(I::I32Const(32 * args.len() as i32));
                fg.call(F_EMIT);
            }
            StmtKind::Transfer { to, amount } => {
                let t = self.expr(fg, to);
                let a = self.expr(fg, amount);
                fg.addr(t);
                fg.addr(a);
                fg.call(F_TRANSFER);
                fg.push(I::I32Eqz);
                fg.push(I::If(BlockType::Empty));
                let (m, n) = self.string("transfer failed");
                fg.push(I::I32Const(m as i32));
                fg.push(I::I32Const(n as i32));
                fg.call(F_REVERT);
                fg.push(I::End);
            }
            StmtKind::XSend { chain, to, payload } => {
                let buf = self.pack(fg, &[chain.clone(), to.clone(), payload.clone()]);
                fg.addr(buf);
                fg.call(F_XSEND);
            }
            StmtKind::Return(v) => {
                if let (Some(v), Some(out)) = (v, fg.out) {
                    let l = self.expr(fg, v);
                    for k in 0..4u64 {
                        fg.push(I::LocalGet(out));
                        fg.addr(l);
                        fg.push(I::I64Load(mem(k * 8)));
                        fg.push(I::I64Store(mem(k * 8)));
                    }
                }
                fg.push(I::Br(fg.depth - 1));
            }
            StmtKind::Expr(e) => {
                let _ = self.expr(fg, e);
            }
        }
    }

    /// Evaluates `args` into consecutive words; returns the first.
    fn pack(&mut self, fg: &mut FnGen, args: &[Expr]) -> Loc {
        let base = fg.alloc(32 * args.len().max(1) as u32);
        for (i, a) in args.iter().enumerate() {
            let v = self.expr(fg, a);
            fg.copy(Loc::Frame(base + 32 * i as u32), v);
        }
        Loc::Frame(base)
    }

    /// Computes the storage key of a path into a fresh frame slot.
    fn key(&mut self, fg: &mut FnGen, p: &StoragePath) -> Loc {
        let key = fg.temp();
        let base = self.constant(var_key(p.var));
        fg.copy(key, base);
        for step in &p.steps {
            match step {
                Step::Key(e) => {
                    let k = self.expr(fg, e);
                    let buf = Loc::Frame(fg.alloc(64));
                    fg.copy(buf, k);
                    fg.copy_to_addr_plus(buf, 32, key);
                    fg.push(I::I32Const(HASH_KECCAK256));
                    fg.addr(buf);
                    fg.push(I::I32Const(64));
                    fg.addr(key);
                    fg.call(F_HASH);
                }
                Step::Index(e, n) => {
                    let i = self.expr(fg, e);
                    self.bounds(fg, i, *n);
                    self.add_key(fg, key, i);
                }
                Step::Field(i) => {
                    let c = self.constant(Word::from_u64(*i as u64));
                    self.add_key(fg, key, c);
                }
            }
        }
        key
    }

    fn bounds(&mut self, fg: &mut FnGen, i: Loc, n: u32) {
        let len = self.constant(Word::from_u64(u64::from(n)));
        fg.push(I::I32Const(CMP_GE));
        fg.addr(i);
        fg.addr(len);
        fg.call(F_CMP);
        fg.push(I::If(BlockType::Empty));
        fg.push(I::I32Const(0x32));
        fg.call(F_PANIC);
        fg.push(I::End);
    }

    fn add_key(&mut self, fg: &mut FnGen, key: Loc, off: Loc) {
        fg.push(I::I32Const(ARITH_ADD | ARITH_WRAP));
        fg.push(I::I32Const(256));
        fg.addr(key);
        fg.addr(off);
        fg.addr(key);
        fg.call(F_ARITH);
    }

    fn expr(&mut self, fg: &mut FnGen, e: &Expr) -> Loc {
        match &e.kind {
            ExprKind::Const(w) => self.constant(*w),
            ExprKind::Local(l) => Loc::Frame(fg.slots[l]),
            ExprKind::Load(p) => {
                let key = self.key(fg, p);
                let out = fg.temp();
                fg.addr(key);
                fg.addr(out);
                fg.call(F_SLOAD);
                out
            }
            ExprKind::Arith {
                op,
                bits,
                wrapping,
                lhs,
                rhs,
            } => {
                let a = self.expr(fg, lhs);
                let b = self.expr(fg, rhs);
                let out = fg.temp();
                let code = match op {
                    ArithOp::Add => ARITH_ADD,
                    ArithOp::Sub => ARITH_SUB,
                    ArithOp::Mul => ARITH_MUL,
                    ArithOp::Div => ARITH_DIV,
                    ArithOp::Rem => ARITH_REM,
                } | if *wrapping { ARITH_WRAP } else { 0 };
                fg.push(I::I32Const(code));
                fg.push(I::I32Const(i32::from(*bits)));
                fg.addr(a);
                fg.addr(b);
                fg.addr(out);
                fg.call(F_ARITH);
                out
            }
            ExprKind::Cmp { op, lhs, rhs } => {
                let a = self.expr(fg, lhs);
                let b = self.expr(fg, rhs);
                let out = fg.temp();
                fg.zero(out);
                fg.addr(out);
                fg.push(I::I32Const(match op {
                    CmpOp::Eq => CMP_EQ,
                    CmpOp::Ne => CMP_NE,
                    CmpOp::Lt => CMP_LT,
                    CmpOp::Le => CMP_LE,
                    CmpOp::Gt => CMP_GT,
                    CmpOp::Ge => CMP_GE,
                }));
                fg.addr(a);
                fg.addr(b);
                fg.call(F_CMP);
                fg.push(I::I32Store8(mem(31)));
                out
            }
            ExprKind::And(a, b) | ExprKind::Or(a, b) => {
                let is_and = matches!(e.kind, ExprKind::And(..));
                let out = fg.temp();
                let l = self.expr(fg, a);
                fg.copy(out, l);
                fg.truthy(out);
                if !is_and {
                    fg.push(I::I32Eqz);
                }
                // Short-circuit: the right side runs only when it decides the result.
                fg.push(I::If(BlockType::Empty));
                fg.depth += 1;
                let r = self.expr(fg, b);
                fg.copy(out, r);
                fg.depth -= 1;
                fg.push(I::End);
                out
            }
            ExprKind::Not(a) => {
                let v = self.expr(fg, a);
                let out = fg.temp();
                fg.zero(out);
                fg.addr(out);
                fg.truthy(v);
                fg.push(I::I32Eqz);
                fg.push(I::I32Store8(mem(31)));
                out
            }
            ExprKind::Resize { bits, value } => {
                let from = value.ty.uint_bits().unwrap_or(256);
                let v = self.expr(fg, value);
                if *bits >= from {
                    return v;
                }
                let out = fg.temp();
                fg.push(I::I32Const(i32::from(*bits)));
                fg.addr(v);
                fg.addr(out);
                fg.call(F_RESIZE);
                out
            }
            ExprKind::Reinterpret(v) => self.expr(fg, v),
            ExprKind::Env(env) => {
                let out = fg.temp();
                fg.push(I::I32Const(match env {
                    Env::Sender => ENV_SENDER,
                    Env::Value => ENV_VALUE,
                    Env::Now => ENV_NOW,
                    Env::Height => ENV_HEIGHT,
                    Env::SelfBalance => ENV_BALANCE,
                }));
                fg.addr(out);
                fg.call(F_ENV);
                out
            }
            ExprKind::Hash { kind, args } => {
                let buf = self.pack(fg, args);
                let out = fg.temp();
                fg.push(I::I32Const(match kind {
                    HashKind::Sha256 => HASH_SHA256,
                    HashKind::Keccak256 => HASH_KECCAK256,
                }));
                fg.addr(buf);
                fg.push(I::I32Const(32 * args.len() as i32));
                fg.addr(out);
                fg.call(F_HASH);
                out
            }
            ExprKind::Call { func, args } => {
                let locs: Vec<Loc> = args.iter().map(|a| self.expr(fg, a)).collect();
                for l in locs {
                    fg.addr(l);
                }
                let has_ret = self.p.functions[*func].ret.is_some();
                let out = fg.temp();
                if has_ret {
                    fg.addr(out);
                }
                fg.call(IMPORTS.len() as u32 + *func as u32);
                out
            }
            ExprKind::TryTransfer { to, amount } => {
                let t = self.expr(fg, to);
                let a = self.expr(fg, amount);
                let out = fg.temp();
                fg.zero(out);
                fg.addr(out);
                fg.addr(t);
                fg.addr(a);
                fg.call(F_TRANSFER);
                fg.push(I::I32Store8(mem(31)));
                out
            }
            // Rejected by the capability check before code generation.
            ExprKind::EcRecover(_) => {
                fg.push(I::I32Const(1));
                fg.call(F_PANIC);
                fg.temp()
            }
        }
    }

    /// Value sent to an entry that does not take it: revert with no data, as solc does.
    fn reject_value(&mut self, fg: &mut FnGen, tmp: Loc) {
        let zero = self.constant(Word::ZERO);
        fg.push(I::I32Const(ENV_VALUE));
        fg.addr(tmp);
        fg.call(F_ENV);
        fg.push(I::I32Const(CMP_NE));
        fg.addr(tmp);
        fg.addr(zero);
        fg.call(F_CMP);
        fg.push(I::If(BlockType::Empty));
        fg.push(I::I32Const(0));
        fg.call(F_PANIC);
        fg.push(I::End);
    }

    fn input_kind(t: &Ty) -> i32 {
        match t {
            Ty::Bool => INPUT_BOOL,
            Ty::Address | Ty::Bytes32 => INPUT_RAW,
            other => i32::from(other.uint_bits().unwrap_or(256)),
        }
    }

    fn entry(&mut self, idx: usize, f: &Function, nimports: u32) -> WFunction {
        let mut fg = FnGen {
            code: Vec::new(),
            frame: 0,
            depth: 0,
            slots: HashMap::new(),
            base: 0,
            out: None,
        };
        let tmp = fg.temp();
        if f.mutability != Mutability::Payable {
            self.reject_value(&mut fg, tmp);
        }
        let lock = self.constant(Word(LOCK_KEY));
        if f.nonreentrant {
            fg.addr(lock);
            fg.addr(tmp);
            fg.call(F_SLOAD);
            fg.truthy(tmp);
            fg.push(I::If(BlockType::Empty));
            fg.push(I::I32Const(0));
            fg.call(F_PANIC);
            fg.push(I::End);
            let one = self.constant(Word::from_u64(1));
            fg.addr(lock);
            fg.addr(one);
            fg.call(F_SSTORE);
        }
        let mut args = Vec::new();
        for (i, &l) in f.params.iter().enumerate() {
            let slot = fg.temp();
            fg.push(I::I32Const(i as i32));
            fg.push(I::I32Const(Self::input_kind(&f.locals[l].ty)));
            fg.addr(slot);
            fg.call(F_INPUT);
            args.push(slot);
        }
        for a in &args {
            fg.addr(*a);
        }
        let out = fg.temp();
        if f.ret.is_some() {
            fg.addr(out);
        }
        fg.call(nimports + idx as u32);
        if f.nonreentrant {
            let zero = self.constant(Word::ZERO);
            fg.addr(lock);
            fg.addr(zero);
            fg.call(F_SSTORE);
        }
        if f.ret.is_some() {
            fg.addr(out);
            fg.push(I::I32Const(32));
            fg.call(F_RET);
        }
        Self::finish(fg, 0)
    }

    /// The getter of a `pub storage` variable: keys (or an index) in, the value (or every
    /// field of a struct) out, like the getters solc and vyper generate.
    fn getter(&mut self, v: VarId) -> WFunction {
        let mut fg = FnGen {
            code: Vec::new(),
            frame: 0,
            depth: 0,
            slots: HashMap::new(),
            base: 0,
            out: None,
        };
        let tmp = fg.temp();
        self.reject_value(&mut fg, tmp);
        let key = fg.temp();
        let base = self.constant(var_key(v));
        fg.copy(key, base);
        let mut ty = self.p.storage[v].ty.clone();
        let mut argn = 0;
        loop {
            match ty {
                Ty::Map(k, val) => {
                    let slot = fg.temp();
                    fg.push(I::I32Const(argn));
                    fg.push(I::I32Const(Self::input_kind(&k)));
                    fg.addr(slot);
                    fg.call(F_INPUT);
                    argn += 1;
                    let buf = Loc::Frame(fg.alloc(64));
                    fg.copy(buf, slot);
                    fg.copy_to_addr_plus(buf, 32, key);
                    fg.push(I::I32Const(HASH_KECCAK256));
                    fg.addr(buf);
                    fg.push(I::I32Const(64));
                    fg.addr(key);
                    fg.call(F_HASH);
                    ty = *val;
                }
                Ty::Array(el, n) => {
                    let slot = fg.temp();
                    fg.push(I::I32Const(argn));
                    fg.push(I::I32Const(256));
                    fg.addr(slot);
                    fg.call(F_INPUT);
                    argn += 1;
                    self.bounds(&mut fg, slot, n);
                    self.add_key(&mut fg, key, slot);
                    ty = *el;
                }
                _ => break,
            }
        }
        let fields = match &ty {
            Ty::Struct(sid) => self.p.structs[*sid].fields.len(),
            _ => 1,
        };
        let out = fg.alloc(32 * fields as u32);
        for i in 0..fields {
            if i > 0 {
                let one = self.constant(Word::from_u64(1));
                self.add_key(&mut fg, key, one);
            }
            fg.addr(key);
            fg.addr(Loc::Frame(out + 32 * i as u32));
            fg.call(F_SLOAD);
        }
        fg.addr(Loc::Frame(out));
        fg.push(I::I32Const(32 * fields as i32));
        fg.call(F_RET);
        Self::finish(fg, 0)
    }
}
