//! The wire codec: length-delimited frames carrying a version byte and a msgpack body.
//!
//! ```text
//! frame := length (u32 big-endian, counts the bytes after it) | version (u8) | msgpack body
//! ```
//!
//! Limits are enforced before any allocation: a declared length above
//! [`WireLimits::max_frame`] is refused from the 4-byte prefix alone, and a body is
//! structurally scanned (every declared length checked against the bytes present, nesting
//! bounded by [`WireLimits::max_depth`]) before serde sees it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::{Decoder, Encoder};

/// Current wire version. Frames with another version byte are refused.
pub const WIRE_VERSION: u8 = 1;
/// Default maximum frame size: 4 MiB.
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024;
/// Default maximum msgpack nesting depth.
pub const DEFAULT_MAX_DEPTH: usize = 32;

/// Limits applied to every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireLimits {
    pub max_frame: usize,
    pub max_depth: usize,
}

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits {
            max_frame: DEFAULT_MAX_FRAME,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// Everything that can be wrong with bytes from the wire. None of these is retryable on
/// the same connection: the peer sent something we will never accept.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {declared} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { declared: usize, max: usize },
    #[error("frame is empty")]
    EmptyFrame,
    #[error("frame truncated: {0}")]
    Truncated(&'static str),
    #[error("unsupported wire version {got} (this node speaks {WIRE_VERSION})")]
    UnsupportedVersion { got: u8 },
    #[error("message nesting exceeds depth {max}")]
    TooDeep { max: usize },
    #[error("malformed msgpack at byte {offset}: {what}")]
    Malformed { offset: usize, what: &'static str },
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    #[error("message does not match the expected type: {0}")]
    Decode(String),
    #[error("message could not be encoded: {0}")]
    Encode(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl WireError {
    /// A stable, low-cardinality label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::FrameTooLarge { .. } => "frame_too_large",
            WireError::EmptyFrame => "empty_frame",
            WireError::Truncated(_) => "truncated",
            WireError::UnsupportedVersion { .. } => "unsupported_version",
            WireError::TooDeep { .. } => "too_deep",
            WireError::Malformed { .. } => "malformed",
            WireError::TrailingBytes(_) => "trailing_bytes",
            WireError::Decode(_) => "decode",
            WireError::Encode(_) => "encode",
            WireError::Io(_) => "io",
        }
    }
}

/// Encode `msg` as a frame body (version byte + msgpack), checking the size limit.
pub fn encode_body<T: Serialize>(msg: &T, limits: &WireLimits) -> Result<Bytes, WireError> {
    let mut out = Vec::with_capacity(64);
    out.push(WIRE_VERSION);
    rmp_serde::encode::write_named(&mut out, msg).map_err(|e| WireError::Encode(e.to_string()))?;
    if out.len() > limits.max_frame {
        return Err(WireError::FrameTooLarge {
            declared: out.len(),
            max: limits.max_frame,
        });
    }
    Ok(Bytes::from(out))
}

/// Decode a frame body produced by [`encode_body`]. Never panics on any input.
pub fn decode_body<T: DeserializeOwned>(body: &[u8], limits: &WireLimits) -> Result<T, WireError> {
    if body.len() > limits.max_frame {
        return Err(WireError::FrameTooLarge {
            declared: body.len(),
            max: limits.max_frame,
        });
    }
    let (&version, rest) = body.split_first().ok_or(WireError::EmptyFrame)?;
    if version != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion { got: version });
    }
    scan_msgpack(rest, limits.max_depth)?;
    rmp_serde::from_slice(rest).map_err(|e| WireError::Decode(e.to_string()))
}

/// Walk one msgpack value without allocating per element: checks that every declared
/// length fits in the remaining bytes, that nesting stays within `max_depth`, and that
/// exactly one value fills `buf`.
pub fn scan_msgpack(buf: &[u8], max_depth: usize) -> Result<(), WireError> {
    // Each stack entry: how many values the enclosing container still expects.
    let mut stack: Vec<u64> = Vec::new();
    let mut pos = 0usize;
    let mut pending: u64 = 1; // values expected at the current level
    loop {
        while pending == 0 {
            match stack.pop() {
                Some(p) => pending = p,
                None => {
                    return if pos == buf.len() {
                        Ok(())
                    } else {
                        Err(WireError::TrailingBytes(buf.len() - pos))
                    };
                }
            }
        }
        pending -= 1;
        let at = pos;
        let marker = *buf.get(pos).ok_or(WireError::Truncated("missing value"))?;
        pos += 1;
        let remaining = |pos: usize| buf.len().saturating_sub(pos);
        // (bytes of length field, then: Skip(n) data bytes | Container(n values))
        enum Step {
            Skip(u64),
            Container(u64),
        }
        let read_len = |pos: &mut usize, n: usize| -> Result<u64, WireError> {
            let bytes = buf
                .get(*pos..*pos + n)
                .ok_or(WireError::Truncated("length field"))?;
            *pos += n;
            Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
        };
        let step = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => Step::Skip(0),
            0x80..=0x8f => Step::Container(2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => Step::Container(u64::from(marker & 0x0f)),
            0xa0..=0xbf => Step::Skip(u64::from(marker & 0x1f)),
            0xc1 => {
                return Err(WireError::Malformed {
                    offset: at,
                    what: "reserved marker 0xc1",
                })
            }
            0xc4 | 0xd9 => Step::Skip(read_len(&mut pos, 1)?),
            0xc5 | 0xda => Step::Skip(read_len(&mut pos, 2)?),
            0xc6 | 0xdb => Step::Skip(read_len(&mut pos, 4)?),
            0xc7 => Step::Skip(read_len(&mut pos, 1)? + 1),
            0xc8 => Step::Skip(read_len(&mut pos, 2)? + 1),
            0xc9 => Step::Skip(read_len(&mut pos, 4)? + 1),
            0xca | 0xce | 0xd2 => Step::Skip(4),
            0xcb | 0xcf | 0xd3 => Step::Skip(8),
            0xcc | 0xd0 => Step::Skip(1),
            0xcd | 0xd1 => Step::Skip(2),
            0xd4 => Step::Skip(2),
            0xd5 => Step::Skip(3),
            0xd6 => Step::Skip(5),
            0xd7 => Step::Skip(9),
            0xd8 => Step::Skip(17),
            0xdc => Step::Container(read_len(&mut pos, 2)?),
            0xdd => Step::Container(read_len(&mut pos, 4)?),
            0xde => Step::Container(2 * read_len(&mut pos, 2)?),
            0xdf => Step::Container(2 * read_len(&mut pos, 4)?),
        };
        match step {
            Step::Skip(n) => {
                if n > remaining(pos) as u64 {
                    return Err(WireError::Truncated("declared length exceeds the frame"));
                }
                pos += n as usize;
            }
            Step::Container(n) => {
                // every element takes at least one byte
                if n > remaining(pos) as u64 {
                    return Err(WireError::Truncated(
                        "declared element count exceeds the frame",
                    ));
                }
                if n > 0 {
                    if stack.len() + 1 > max_depth {
                        return Err(WireError::TooDeep { max: max_depth });
                    }
                    stack.push(pending);
                    pending = n;
                }
            }
        }
    }
}

/// tokio-util codec for length-delimited frames. Yields frame bodies (version + msgpack).
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    limits: WireLimits,
}

impl FrameCodec {
    pub fn new(limits: WireLimits) -> Self {
        FrameCodec { limits }
    }

    pub fn limits(&self) -> &WireLimits {
        &self.limits
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(WireLimits::default())
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let declared = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if declared > self.limits.max_frame {
            return Err(WireError::FrameTooLarge {
                declared,
                max: self.limits.max_frame,
            });
        }
        if declared == 0 {
            return Err(WireError::EmptyFrame);
        }
        if src.len() < 4 + declared {
            // Bounded by max_frame, checked above.
            src.reserve(4 + declared - src.len());
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(declared)))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(WireError::Truncated("stream ended inside a frame")),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = WireError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), WireError> {
        if item.len() > self.limits.max_frame {
            return Err(WireError::FrameTooLarge {
                declared: item.len(),
                max: self.limits.max_frame,
            });
        }
        if item.is_empty() {
            return Err(WireError::EmptyFrame);
        }
        dst.reserve(4 + item.len());
        dst.put_u32(item.len() as u32);
        dst.extend_from_slice(&item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Domain, Keypair, NetworkId, SignedMessage};
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Sample {
        Unit,
        Num(u64, i32),
        Text { s: String, b: Vec<u8> },
        Nested(Vec<Vec<u16>>),
    }

    fn sample() -> impl Strategy<Value = Sample> {
        prop_oneof![
            Just(Sample::Unit),
            (any::<u64>(), any::<i32>()).prop_map(|(a, b)| Sample::Num(a, b)),
            (".*", proptest::collection::vec(any::<u8>(), 0..300))
                .prop_map(|(s, b)| Sample::Text { s, b }),
            proptest::collection::vec(proptest::collection::vec(any::<u16>(), 0..8), 0..8)
                .prop_map(Sample::Nested),
        ]
    }

    proptest! {
        #[test]
        fn round_trip_sample(m in sample()) {
            let l = WireLimits::default();
            let body = encode_body(&m, &l).unwrap();
            prop_assert_eq!(decode_body::<Sample>(&body, &l).unwrap(), m);
        }

        #[test]
        fn round_trip_signed_message(payload in proptest::collection::vec(any::<u8>(), 0..512), net in any::<u64>()) {
            let l = WireLimits::default();
            let m = SignedMessage::new(&Keypair::dev("p"), Domain::AppMessage, NetworkId(net), payload);
            let body = encode_body(&m, &l).unwrap();
            let back: SignedMessage = decode_body(&body, &l).unwrap();
            prop_assert!(back.verify(Domain::AppMessage, NetworkId(net)).is_ok());
            prop_assert_eq!(back, m);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let l = WireLimits { max_frame: 1024, max_depth: 8 };
            let _ = decode_body::<Sample>(&bytes, &l);
            let mut codec = FrameCodec::new(l);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
        }

        #[test]
        fn frames_survive_arbitrary_splitting(msgs in proptest::collection::vec(sample(), 1..10), cut in 1usize..64) {
            let l = WireLimits::default();
            let mut codec = FrameCodec::new(l);
            let mut wire = BytesMut::new();
            for m in &msgs {
                codec.encode(encode_body(m, &l).unwrap(), &mut wire).unwrap();
            }
            let mut got = Vec::new();
            let mut buf = BytesMut::new();
            for chunk in wire.chunks(cut) {
                buf.extend_from_slice(chunk);
                while let Some(f) = codec.decode(&mut buf).unwrap() {
                    got.push(decode_body::<Sample>(&f, &l).unwrap());
                }
            }
            prop_assert_eq!(got, msgs);
        }
    }

    #[test]
    fn oversized_frame_refused_from_prefix_alone() {
        let mut codec = FrameCodec::new(WireLimits {
            max_frame: 1024,
            max_depth: 8,
        });
        // declares 3 GiB; only the 4-byte prefix is present
        let mut buf = BytesMut::from(&[0xC0u8, 0, 0, 0][..]);
        let cap_before = buf.capacity();
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(
            matches!(err, WireError::FrameTooLarge { declared, max: 1024 } if declared == 0xC000_0000)
        );
        assert_eq!(
            buf.capacity(),
            cap_before,
            "no allocation for the declared size"
        );
    }

    #[test]
    fn bad_version_truncation_depth_and_trailing() {
        let l = WireLimits {
            max_frame: 1 << 20,
            max_depth: 4,
        };
        let mut body = encode_body(&Sample::Unit, &l).unwrap().to_vec();
        body[0] = 9;
        assert!(matches!(
            decode_body::<Sample>(&body, &l),
            Err(WireError::UnsupportedVersion { got: 9 })
        ));
        // array32 declaring 2^32-1 elements with nothing after it
        let huge = [WIRE_VERSION, 0xdd, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode_body::<Sample>(&huge, &l),
            Err(WireError::Truncated(_))
        ));
        // 10 nested fixarrays of one element
        let mut deep = vec![WIRE_VERSION];
        deep.extend(std::iter::repeat_n(0x91u8, 10));
        deep.push(0x00);
        assert!(matches!(
            decode_body::<Sample>(&deep, &l),
            Err(WireError::TooDeep { max: 4 })
        ));
        let mut trailing = encode_body(&Sample::Num(1, 2), &l).unwrap().to_vec();
        trailing.push(0);
        assert!(matches!(
            decode_body::<Sample>(&trailing, &l),
            Err(WireError::TrailingBytes(1))
        ));
        assert!(matches!(
            decode_body::<Sample>(&[], &l),
            Err(WireError::EmptyFrame)
        ));
    }

    #[test]
    fn eof_inside_frame_is_truncation() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0u8, 0, 0, 10, 1, 2][..]);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(WireError::Truncated(_))
        ));
    }
}
