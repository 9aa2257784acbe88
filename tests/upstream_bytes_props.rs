//! The fuzz targets of the bytes an upstream controls (`fuzz/fuzz_targets/`
//! `h1_response`, `sse_splitter`, `retry_after`), as property tests that
//! run in CI on every build: cargo-fuzz needs nightly flags and minutes,
//! these need neither. Same properties, generated inputs (arbitrary bytes,
//! and bytes built from the pieces real responses are made of, so the
//! interesting paths are reached). `scripts/fuzz` runs the real fuzzer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use proptest::prelude::*;
use sluice::sse::{SseSplitter, events};
use sluice_upstream::h1::read_response;
use sluice_upstream::retry_after::{CEILING, parse};

/// Pieces of HTTP/1.1 responses, good and bad, to build inputs from.
fn response_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
        Just(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
        Just(b"HTTP/1.0 429 Too Many Requests\r\n".to_vec()),
        Just(b"content-length: 5\r\n".to_vec()),
        Just(b"content-length: 18446744073709551616\r\n".to_vec()),
        Just(b"content-length: -1\r\n".to_vec()),
        Just(b"transfer-encoding: chunked\r\n".to_vec()),
        Just(b"transfer-encoding: gzip, chunked\r\n".to_vec()),
        Just(b"connection: close\r\n".to_vec()),
        Just(b"content-type: text/event-stream\r\n".to_vec()),
        Just(b"retry-after: 1e300\r\n".to_vec()),
        Just(b"retry-after: 99999999999999999999\r\n".to_vec()),
        Just(b"retry-after: -1\r\n".to_vec()),
        Just(b"retry-after: Wed, 21 Oct 2015 07:28:00 GMT\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"5\r\nhello\r\n".to_vec()),
        Just(b"ffffffffffffffffff\r\n".to_vec()),
        Just(b"0\r\nx-trailer: t\r\n\r\n".to_vec()),
        Just(b"data: {}\n\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

fn response_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        proptest::collection::vec(response_piece(), 0..12).prop_map(|ps| ps.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_h1_response_parse_never_panics(data in response_bytes()) {
        if let Ok(Some(r)) = read_response(&data) {
            prop_assert!(r.body.len() <= data.len());
            if let Some(Ok(d)) = r.retry_after {
                prop_assert!(d <= CEILING);
            }
        }
    }

    #[test]
    fn the_sse_splitter_keeps_bytes_in_order_within_its_bound(
        data in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..1024),
            proptest::collection::vec(
                prop_oneof![
                    Just(b"data: {\"a\":1}\n\n".to_vec()),
                    Just(b"data: x\r\n\r\n".to_vec()),
                    Just(b"\n".to_vec()),
                    Just(b"\r\n".to_vec()),
                    Just(b": keep-alive\n\n".to_vec()),
                    "[a-z ]{0,40}".prop_map(String::into_bytes),
                ],
                0..40,
            ).prop_map(|ps| ps.concat()),
        ],
        step in 1usize..32,
        max in 16usize..256,
    ) {
        let mut split = SseSplitter::with_max_event(max);
        let mut out = Vec::new();
        let mut failed = false;
        for piece in data.chunks(step) {
            match split.push(Bytes::copy_from_slice(piece)) {
                Ok(Some(run)) => {
                    prop_assert!(run.ends_with(b"\n\n") || run.ends_with(b"\n\r\n"));
                    let mut end = 0;
                    for ev in events(&run) {
                        prop_assert_eq!(ev.start, end);
                        end = ev.end;
                    }
                    prop_assert_eq!(end, run.len());
                    out.extend_from_slice(&run);
                }
                Ok(None) => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if !failed && let Some(r) = split.remainder() {
            out.extend_from_slice(&r);
        }
        prop_assert!(data.starts_with(&out));
        if !failed {
            // Only a whitespace-only tail may be left out.
            prop_assert!(data[out.len()..].iter().all(u8::is_ascii_whitespace));
        }
    }

    #[test]
    fn retry_after_is_a_bounded_delay_or_a_reason(
        v in prop_oneof![
            any::<String>(),
            "[0-9]{0,40}",
            "-?[0-9]{0,5}(\\.[0-9]{0,5})?(e[+-]?[0-9]{0,4})?",
            Just("inf".to_string()),
            Just("NaN".to_string()),
            Just("Sun, 06 Nov 1994 08:49:37 GMT".to_string()),
        ]
    ) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        if let Ok(d) = parse(v.as_bytes(), now) {
            prop_assert!(d <= CEILING);
            let _ = tokio::time::Instant::now() + d;
        }
    }
}
