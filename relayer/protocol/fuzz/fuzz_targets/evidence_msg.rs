//! Bytes from a relayer through the evidence-link decoder. Must never panic; whatever
//! decodes must encode and decode back to the same value.
#![no_main]

use isthmus_relay_protocol::EvidenceMsg;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = rmp_serde::from_slice::<EvidenceMsg>(data) {
        let again = rmp_serde::to_vec_named(&msg).expect("a decoded message encodes");
        let back: EvidenceMsg = rmp_serde::from_slice(&again).expect("an encoded message decodes");
        assert_eq!(back, msg);
    }
});
