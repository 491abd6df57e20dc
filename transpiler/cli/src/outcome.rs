//! Outcome classes: what `xcl test` compares across targets instead of raw bytes, because
//! the targets fail differently (Solidity raises `Panic(0x11)` where Vyper reverts empty).

use std::fmt;

#[derive(Clone, Debug)]
pub enum Class {
    Success,
    Revert(String),
    /// A failed runtime check; `None` when the target gives no code (Vyper, ABI errors).
    Panic(Option<u32>),
    OutOfGas,
    Trap(String),
}

impl Class {
    pub fn from_revert_data(d: &[u8]) -> Class {
        if d.is_empty() {
            return Class::Panic(None);
        }
        if d.len() >= 4 && d[..4] == [0x4e, 0x48, 0x7b, 0x71] && d.len() >= 36 {
            let code = u32::from_be_bytes([d[32], d[33], d[34], d[35]]);
            return Class::Panic(Some(code));
        }
        if d.len() >= 68 && d[..4] == [0x08, 0xc3, 0x79, 0xa0] {
            let len = usize::from(u16::from_be_bytes([d[66], d[67]]));
            let msg = d.get(68..68 + len).unwrap_or(&[]);
            return Class::Revert(String::from_utf8_lossy(msg).into_owned());
        }
        Class::Revert(format!("0x{}", hex::encode(d)))
    }

    /// Same class; panic codes must agree only when both sides report one.
    pub fn agrees(&self, o: &Class) -> bool {
        match (self, o) {
            (Class::Success, Class::Success) | (Class::OutOfGas, Class::OutOfGas) => true,
            (Class::Revert(a), Class::Revert(b)) => a == b,
            (Class::Panic(a), Class::Panic(b)) => match (a, b) {
                (Some(x), Some(y)) => x == y,
                _ => true,
            },
            _ => false,
        }
    }

    /// Matches a vector's `expect`: `success`, `revert`, `revert: msg`, `panic`,
    /// `panic: 0x11`, `out-of-gas`.
    pub fn matches(&self, expect: &str) -> bool {
        let e = expect.trim();
        match self {
            Class::Success => e == "success",
            Class::OutOfGas => e == "out-of-gas",
            Class::Revert(m) => {
                e == "revert" || e.strip_prefix("revert:").is_some_and(|x| x.trim() == m)
            }
            Class::Panic(code) => {
                e == "panic"
                    || e.strip_prefix("panic:").is_some_and(|x| {
                        let x = x.trim().trim_start_matches("0x");
                        code.is_none_or(|c| u32::from_str_radix(x, 16).ok() == Some(c))
                    })
            }
            Class::Trap(_) => false,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Class::Success => f.write_str("success"),
            Class::Revert(m) => write!(f, "revert: {m}"),
            Class::Panic(Some(c)) => write!(f, "panic: 0x{c:02x}"),
            Class::Panic(None) => f.write_str("panic"),
            Class::OutOfGas => f.write_str("out-of-gas"),
            Class::Trap(t) => write!(f, "trap: {t}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub class: Class,
    pub data: Vec<u8>,
    pub events: Vec<(String, Vec<u8>)>,
    /// Why the target stopped, in its own terms, when it ran out of gas or fuel; never
    /// compared across targets.
    pub stop: Option<String>,
}

impl Outcome {
    pub fn new(class: Class) -> Outcome {
        Outcome {
            class,
            data: Vec::new(),
            events: Vec::new(),
            stop: None,
        }
    }
}
