use proptest::prelude::*;

use super::*;

fn events(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| (format!("contentBlockDelta{i}"), format!("{{\"delta\":{{\"text\":\"tok {i}\"}}}}").into_bytes()))
        .collect()
}

fn stream(events: &[(String, Vec<u8>)]) -> Vec<u8> {
    events.iter().flat_map(|(t, p)| encode_event(t, p).unwrap().to_vec()).collect()
}

fn decode_all(d: &mut Decoder) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(m) = d.next_message().unwrap() {
        match classify(&m).unwrap() {
            StreamEvent::Event { event_type, payload } => out.push((event_type, payload.to_vec())),
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

#[test]
fn a_split_at_every_byte_gives_the_same_messages() {
    let want = events(3);
    let bytes = stream(&want);
    for at in 0..=bytes.len() {
        let mut d = Decoder::default();
        let mut got = Vec::new();
        d.push(&bytes[..at]);
        got.extend(decode_all(&mut d));
        d.push(&bytes[at..]);
        got.extend(decode_all(&mut d));
        assert_eq!(got, want, "split at {at}");
        d.finish().unwrap();
    }
}

#[test]
fn byte_by_byte_feeding_works() {
    let want = events(4);
    let bytes = stream(&want);
    let mut d = Decoder::default();
    let mut got = Vec::new();
    for b in &bytes {
        d.push(std::slice::from_ref(b));
        got.extend(decode_all(&mut d));
    }
    assert_eq!(got, want);
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_messages(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..6),
        cuts in proptest::collection::vec(1usize..64, 1..200),
    ) {
        let want: Vec<(String, Vec<u8>)> = payloads.into_iter().enumerate().map(|(i, p)| (format!("e{i}"), p)).collect();
        let bytes = stream(&want);
        let mut d = Decoder::default();
        let mut got = Vec::new();
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at >= bytes.len() { break; }
            let end = (at + cut).min(bytes.len());
            d.push(&bytes[at..end]);
            got.extend(decode_all(&mut d));
            at = end;
        }
        prop_assert_eq!(got, want);
        prop_assert!(d.finish().is_ok());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut d = Decoder::new(1024);
        d.push(&bytes);
        for _ in 0..10 {
            if d.next_message().is_err() { break; }
        }
        prop_assert!(d.buffered() <= 2000);
    }
}

#[test]
fn corrupted_prelude_crc_is_a_clear_error_and_sticks() {
    let mut bytes = encode_event("chunk", b"{}").unwrap().to_vec();
    bytes[9] ^= 0xff;
    let mut d = Decoder::default();
    d.push(&bytes);
    let err = d.next_message().unwrap_err();
    assert!(matches!(err, FrameError::PreludeChecksum { .. }), "{err}");
    assert!(err.to_string().contains("prelude checksum mismatch"));
    d.push(&encode_event("chunk", b"{}").unwrap());
    assert_eq!(d.next_message().unwrap_err(), err, "no resync after a bad frame");
    assert_eq!(d.buffered(), 0);
}

#[test]
fn corrupted_payload_fails_the_message_crc() {
    let mut bytes = encode_event("chunk", b"{\"bytes\":\"aGk=\"}").unwrap().to_vec();
    let n = bytes.len();
    bytes[n - 6] ^= 0x01;
    let mut d = Decoder::default();
    d.push(&bytes);
    let err = d.next_message().unwrap_err().to_string();
    assert!(err.contains("malformed event-stream frame") && err.to_lowercase().contains("checksum"), "{err}");
}

#[test]
fn an_oversized_frame_is_refused_from_its_prelude_alone() {
    // A valid prelude announcing a 100 MB frame: refused after 12 bytes,
    // before any of the 100 MB is buffered.
    let total: u32 = 100 * 1024 * 1024;
    let mut prelude = Vec::new();
    prelude.extend_from_slice(&total.to_be_bytes());
    prelude.extend_from_slice(&0u32.to_be_bytes());
    let crc = crc32fast::hash(&prelude);
    prelude.extend_from_slice(&crc.to_be_bytes());
    let mut d = Decoder::new(64 * 1024);
    d.push(&prelude);
    let err = d.next_message().unwrap_err();
    assert_eq!(err, FrameError::TooLarge { len: total as usize, max: 64 * 1024 });
    d.push(&[0u8; 4096]);
    assert_eq!(d.buffered(), 0);
    // A frame over a small limit is refused; the same frame under it passes.
    let frame = encode_event("chunk", &[b'x'; 2000]).unwrap();
    let mut small = Decoder::new(1000);
    small.push(&frame);
    assert!(matches!(small.next_message(), Err(FrameError::TooLarge { .. })));
    let mut big = Decoder::new(4000);
    big.push(&frame);
    assert!(big.next_message().unwrap().is_some());
}

#[test]
fn a_declared_length_does_not_reserve_the_frame() {
    // A valid prelude declaring the largest allowed frame, then a trickle:
    // the buffer stays near what arrived, and the frame still decodes whole.
    let frame = encode_event("chunk", &vec![b'x'; 300 * 1024]).unwrap();
    let mut d = Decoder::default();
    d.push(&frame[..PRELUDE]);
    assert!(d.next_message().unwrap().is_none());
    assert!(d.buf.capacity() <= PRELUDE + RESERVE_AHEAD, "reserved {}", d.buf.capacity());
    let mut declared = frame[..PRELUDE].to_vec();
    declared[..4].copy_from_slice(&(DEFAULT_MAX_FRAME as u32).to_be_bytes());
    let crc = crc32fast::hash(&declared[..8]);
    declared[8..].copy_from_slice(&crc.to_be_bytes());
    let mut hostile = Decoder::default();
    hostile.push(&declared);
    hostile.push(&[0u8; 1000]);
    assert!(hostile.next_message().unwrap().is_none());
    assert!(hostile.buf.capacity() < 2 * RESERVE_AHEAD, "reserved {}", hostile.buf.capacity());
    for piece in frame[PRELUDE..].chunks(4096) {
        d.push(piece);
    }
    assert!(d.next_message().unwrap().is_some());
    assert_eq!(d.buffered(), 0);
}

#[test]
fn a_length_below_the_minimum_is_refused() {
    let mut prelude = 8u32.to_be_bytes().to_vec();
    prelude.extend_from_slice(&0u32.to_be_bytes());
    let crc = crc32fast::hash(&prelude);
    prelude.extend_from_slice(&crc.to_be_bytes());
    let mut d = Decoder::default();
    d.push(&prelude);
    assert_eq!(d.next_message().unwrap_err(), FrameError::TooShort(8));
}

#[test]
fn a_cut_stream_is_reported_at_finish() {
    let bytes = encode_event("chunk", b"{}").unwrap();
    let mut d = Decoder::default();
    d.push(&bytes[..bytes.len() - 3]);
    assert!(d.next_message().unwrap().is_none());
    assert_eq!(d.finish().unwrap_err(), FrameError::Truncated(bytes.len() - 3));
}

#[test]
fn exceptions_and_errors_are_classified() {
    let mut d = Decoder::default();
    d.push(&encode_exception("throttlingException", br#"{"message":"Too many requests"}"#).unwrap());
    let m = d.next_message().unwrap().unwrap();
    assert_eq!(
        classify(&m).unwrap(),
        StreamEvent::Exception {
            exception_type: "throttlingException".into(),
            payload: Bytes::from_static(br#"{"message":"Too many requests"}"#)
        }
    );
    let err = encode(
        vec![
            Header::new(":message-type", HeaderValue::String("error".into())),
            Header::new(":error-code", HeaderValue::String("InternalFailure".into())),
            Header::new(":error-message", HeaderValue::String("boom".into())),
        ],
        b"",
    )
    .unwrap();
    d.push(&err);
    let m = d.next_message().unwrap().unwrap();
    assert_eq!(classify(&m).unwrap(), StreamEvent::Error { code: "InternalFailure".into(), message: "boom".into() });
    let odd = encode(vec![Header::new(":message-type", HeaderValue::String("gossip".into()))], b"").unwrap();
    d.push(&odd);
    let m = d.next_message().unwrap().unwrap();
    assert!(classify(&m).is_err());
}

#[test]
fn invoke_stream_chunks_unwrap_to_the_models_event() {
    let event = br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
    use base64::Engine;
    let payload = format!(r#"{{"bytes":"{}"}}"#, base64::engine::general_purpose::STANDARD.encode(event));
    assert_eq!(chunk_bytes(payload.as_bytes()).unwrap(), event.to_vec());
    assert!(chunk_bytes(br#"{"bytes":"***"}"#).is_err());
    assert!(chunk_bytes(b"[]").is_err());
}
