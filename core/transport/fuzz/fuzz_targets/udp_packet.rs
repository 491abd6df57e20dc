//! Datagrams from the network through the UDP packet parser and the reliability frame
//! parser; a parsed packet must re-encode to the same bytes. Must never panic.
#![no_main]

use isthmus_transport::reliable::RelFrame;
use isthmus_transport::udp::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::parse(data) {
        let mut out = Vec::new();
        p.encode(&mut out);
        assert_eq!(out, data);
    }
    if let Ok(f) = RelFrame::decode(bytes::Bytes::copy_from_slice(data)) {
        let again = RelFrame::decode(f.encode()).ok();
        assert_eq!(again, Some(f));
    }
});
