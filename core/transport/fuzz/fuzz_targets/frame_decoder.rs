//! Bytes from the network through the frame decoder: the length-delimited `FrameCodec`
//! (split at an arbitrary point, as a socket would deliver them), then `decode_body` into
//! a real message type and the transport's frame parser. Must never panic; no frame
//! longer than the limit comes out.
#![no_main]

use bytes::BytesMut;
use isthmus_core::codec::decode_body;
use isthmus_core::{FrameCodec, SignedMessage, WireLimits};
use isthmus_transport::frame::Frame;
use isthmus_transport::HandshakePayload;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let limits = WireLimits { max_frame: 64 * 1024, max_depth: 16 };
    let mut codec = FrameCodec::new(limits);
    let cut = data.first().map_or(0, |b| *b as usize).min(data.len());
    let mut buf = BytesMut::new();
    for chunk in [&data[..cut], &data[cut..]] {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= limits.max_frame);
                    let _ = decode_body::<SignedMessage>(&frame, &limits);
                    let _ = Frame::decode(frame.freeze());
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = codec.decode_eof(&mut buf);
    let _ = decode_body::<SignedMessage>(data, &limits);
    let _ = HandshakePayload::decode(data);
});
