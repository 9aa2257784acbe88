//! Fuzz target: bytes an upstream sends -> the inline HTTP/1.1 client's
//! response parse (interim heads, head, body framing: length, chunked,
//! close). Any input must give a response, "not complete yet" or an error,
//! never a panic, hang or overflow. Run: `scripts/fuzz h1_response`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(r)) = sluice_upstream::h1::read_response(data) {
        // Whatever the body's framing said, it came out of the input.
        assert!(r.body.len() <= data.len());
    }
});
