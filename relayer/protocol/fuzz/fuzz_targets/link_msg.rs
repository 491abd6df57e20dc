//! Bytes from a relayer (or a hub) through the hand-written `LinkMsg` decoder, which also
//! decodes every `Outcome`. Must never panic; whatever decodes must encode and decode back
//! to the same value.
#![no_main]

use isthmus_relay_protocol::LinkMsg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = rmp_serde::from_slice::<LinkMsg>(data) {
        let again = rmp_serde::to_vec_named(&msg).expect("a decoded message encodes");
        let back: LinkMsg = rmp_serde::from_slice(&again).expect("an encoded message decodes");
        assert_eq!(back, msg);
    }
});
