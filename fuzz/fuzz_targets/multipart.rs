//! Fuzz target: a client's `multipart/form-data` upload, cut anywhere, ->
//! the incremental scanner (`sluice::multipart`). It never panics; the same
//! body fed in pieces or whole gives the same parts (or both fail); and
//! every field value it reports is the body's bytes at the span it reports,
//! so renaming `model` there cannot touch anything else.
//! Run: `scripts/fuzz multipart`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::multipart::{MultipartError, Part, Scanner};

fn scan(body: &[u8], step: usize) -> Result<Vec<Part>, MultipartError> {
    let mut s = Scanner::new("XyZ", &["model", "purpose"]);
    let mut out = Vec::new();
    for piece in body.chunks(step) {
        s.feed(piece, &mut out)?;
    }
    s.finish()?;
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else { return };
    let whole = scan(body, body.len().max(1));
    let pieces = scan(body, usize::from(cut % 32) + 1);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the parts depend on how the body was cut"),
        (Err(_), Err(_)) => {}
        _ => panic!("whole: {whole:?}, in pieces: {pieces:?}"),
    }
    for p in whole.iter().flatten() {
        let span = match p {
            Part::Field { value, span, .. } => {
                let at = body.get(span.start as usize..span.end as usize);
                assert_eq!(at, Some(value.as_bytes()), "a field's span is not its value");
                continue;
            }
            Part::FileEnd { span, .. } => span,
            Part::FileStart { .. } => continue,
        };
        assert!(span.start <= span.end && span.end as usize <= body.len(), "a file span outside the body");
    }
});
