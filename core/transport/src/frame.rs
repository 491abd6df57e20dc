//! The frames every transport carries inside its encryption.
//!
//! ```text
//! frame := kind (u8) | body
//! kind 0 = data (body: the application message), 1 = ping (empty body),
//!      2 = close (body: UTF-8 reason, at most 256 bytes)
//! ```
//!
//! Stream transports (Noise-TCP, QUIC) send frames as the length-delimited frames of
//! [`isthmus_core::FrameCodec`] (u32 big-endian length, then the frame); UDP sends one frame
//! per datagram.

use bytes::{BufMut, Bytes, BytesMut};
use isthmus_core::WireError;

const KIND_DATA: u8 = 0;
const KIND_PING: u8 = 1;
const KIND_CLOSE: u8 = 2;
/// Close reasons are cut to this many bytes (on a character boundary).
pub const MAX_REASON: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data(Bytes),
    Ping,
    Close(String),
}

impl Frame {
    pub fn close(reason: &str) -> Frame {
        let mut end = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Frame::Close(reason[..end].to_owned())
    }

    /// Bytes this frame takes once encoded (without any length prefix).
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Frame::Data(b) => b.len(),
            Frame::Ping => 0,
            Frame::Close(r) => r.len(),
        }
    }

    /// Append `kind | body`.
    pub fn encode_into(&self, dst: &mut BytesMut) {
        match self {
            Frame::Data(b) => {
                dst.put_u8(KIND_DATA);
                dst.extend_from_slice(b);
            }
            Frame::Ping => dst.put_u8(KIND_PING),
            Frame::Close(r) => {
                dst.put_u8(KIND_CLOSE);
                dst.extend_from_slice(r.as_bytes());
            }
        }
    }

    /// Append `length (u32 BE) | kind | body`, the layout [`isthmus_core::FrameCodec`] reads.
    pub fn encode_length_delimited(&self, dst: &mut BytesMut) {
        dst.reserve(4 + self.encoded_len());
        dst.put_u32(self.encoded_len() as u32);
        self.encode_into(dst);
    }

    /// Parse `kind | body`. Never panics.
    pub fn decode(mut raw: Bytes) -> Result<Frame, WireError> {
        if raw.is_empty() {
            return Err(WireError::EmptyFrame);
        }
        let kind = raw[0];
        let body = raw.split_off(1);
        match kind {
            KIND_DATA => Ok(Frame::Data(body)),
            KIND_PING if body.is_empty() => Ok(Frame::Ping),
            KIND_PING => Err(WireError::TrailingBytes(body.len())),
            KIND_CLOSE => {
                if body.len() > MAX_REASON {
                    return Err(WireError::Malformed {
                        offset: 1,
                        what: "close reason longer than 256 bytes",
                    });
                }
                String::from_utf8(body.to_vec())
                    .map(Frame::Close)
                    .map_err(|_| WireError::Malformed {
                        offset: 1,
                        what: "close reason is not utf-8",
                    })
            }
            _ => Err(WireError::Malformed {
                offset: 0,
                what: "unknown frame kind",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_core::{FrameCodec, WireLimits};
    use proptest::prelude::*;
    use tokio_util::codec::Decoder;

    fn frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2000).prop_map(|v| Frame::Data(v.into())),
            Just(Frame::Ping),
            ".{0,80}".prop_map(|s| Frame::close(&s)),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip_through_the_core_codec(frames in proptest::collection::vec(frame(), 1..8)) {
            let mut wire = BytesMut::new();
            for f in &frames {
                f.encode_length_delimited(&mut wire);
            }
            let mut codec = FrameCodec::new(WireLimits::default());
            let mut back = Vec::new();
            while let Some(raw) = codec.decode(&mut wire).unwrap() {
                back.push(Frame::decode(raw.freeze()).unwrap());
            }
            prop_assert_eq!(back, frames);
        }

        #[test]
        fn decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Frame::decode(raw.into());
        }
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let long = "é".repeat(200);
        let Frame::Close(r) = Frame::close(&long) else {
            panic!()
        };
        assert!(r.len() <= MAX_REASON && r.len() >= MAX_REASON - 1);
        assert!(Frame::decode(Bytes::from_static(&[9])).is_err());
        assert!(Frame::decode(Bytes::from_static(&[1, 0])).is_err());
    }
}
