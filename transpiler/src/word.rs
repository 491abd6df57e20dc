//! 256-bit big-endian words: the literal values of the IR (no arithmetic beyond parsing).

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Word(pub [u8; 32]);

impl Word {
    pub const ZERO: Word = Word([0; 32]);

    pub fn from_u64(v: u64) -> Word {
        let mut w = [0u8; 32];
        w[24..].copy_from_slice(&v.to_be_bytes());
        Word(w)
    }

    /// Parses decimal digits; `None` if the value does not fit in 256 bits.
    pub fn parse_decimal(s: &str) -> Option<Word> {
        let mut w = [0u8; 32];
        if s.is_empty() {
            return None;
        }
        for c in s.chars() {
            let d = u16::from(u8::try_from(c.to_digit(10)?).ok()?);
            let mut carry = d;
            for byte in w.iter_mut().rev() {
                let v = u16::from(*byte) * 10 + carry;
                *byte = (v & 0xff) as u8;
                carry = v >> 8;
            }
            if carry != 0 {
                return None;
            }
        }
        Some(Word(w))
    }

    /// Parses `0x...`; returns the value and the number of bytes written (digits / 2, rounded up).
    pub fn parse_hex(s: &str) -> Option<(Word, usize)> {
        let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
        if digits.is_empty() || digits.len() > 64 {
            return None;
        }
        let mut w = [0u8; 32];
        for (i, c) in digits.chars().rev().enumerate() {
            let d = u8::try_from(c.to_digit(16)?).ok()?;
            let byte = 31 - i / 2;
            w[byte] |= if i % 2 == 0 { d } else { d << 4 };
        }
        Some((Word(w), digits.len().div_ceil(2)))
    }

    /// Number of significant bits.
    pub fn bits(&self) -> u32 {
        for (i, b) in self.0.iter().enumerate() {
            if *b != 0 {
                return (32 - i as u32) * 8 - b.leading_zeros();
            }
        }
        0
    }

    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }

    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(66);
        s.push_str("0x");
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    pub fn to_decimal(&self) -> String {
        let mut digits = Vec::new();
        let mut n = self.0;
        while n.iter().any(|b| *b != 0) {
            let mut rem = 0u16;
            for byte in n.iter_mut() {
                let v = (rem << 8) | u16::from(*byte);
                *byte = (v / 10) as u8;
                rem = v % 10;
            }
            digits.push(char::from(b'0' + rem as u8));
        }
        if digits.is_empty() {
            return "0".to_string();
        }
        digits.iter().rev().collect()
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_decimal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_round_trip_and_overflow() {
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        let w = Word::parse_decimal(max).unwrap();
        assert_eq!(w.to_decimal(), max);
        assert_eq!(w.bits(), 256);
        assert!(Word::parse_decimal(&format!("{max}0")).is_none());
        assert_eq!(Word::parse_decimal("255").unwrap().bits(), 8);
        assert_eq!(Word::parse_decimal("256").unwrap().bits(), 9);
        assert_eq!(Word::parse_decimal("0").unwrap().bits(), 0);
    }

    #[test]
    fn hex_parse() {
        let (w, n) = Word::parse_hex("0xff01").unwrap();
        assert_eq!(n, 2);
        assert_eq!(w.to_decimal(), "65281");
        assert!(Word::parse_hex("0x").is_none());
    }
}
