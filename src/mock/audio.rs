//! The mock's `POST /v1/audio/transcriptions` and `/v1/audio/translations`:
//! the multipart upload is scanned as it arrives (never held), and the
//! answer is derived from it — the file's name and size — so a test can
//! tell the upload came through whole. Shapes as the API reference shows
//! them (https://platform.openai.com/docs/api-reference/audio/createTranscription):
//! `json` (the default), `verbose_json`, `text`, `srt` and `vtt`, with
//! `usage` in tokens (`gpt-4o-*-transcribe`) or in seconds (`whisper-*`).

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::multipart::{Part, Scanner};

/// Bytes of "audio" the mock counts as one second.
const BYTES_PER_SECOND: u64 = 16_000;
/// Bytes of "audio" the mock counts as one audio token.
const BYTES_PER_TOKEN: u64 = 1_000;

/// What the mock heard: the upload's file and fields.
#[derive(Debug, Clone, Default)]
pub(crate) struct Heard {
    pub filename: String,
    pub size: u64,
    pub model: String,
    pub response_format: String,
}

/// Scan an upload to its end. `Err`: why it is not a valid one (a 400).
pub(crate) async fn hear<S, E>(content_type: &str, mut chunks: S) -> Result<Heard, String>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let boundary = Scanner::boundary(content_type).ok_or("expected multipart/form-data with a boundary")?;
    let mut scanner = Scanner::new(&boundary, &["model", "response_format"]);
    let mut parts = Vec::new();
    let mut heard = Heard { response_format: "json".into(), ..Heard::default() };
    let mut file = false;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| format!("the upload was cut off: {e}"))?;
        scanner.feed(&chunk, &mut parts).map_err(|e| e.0)?;
        for p in parts.drain(..) {
            match p {
                Part::Field { name, value, .. } if name == "model" => heard.model = value,
                Part::Field { name, value, .. } if name == "response_format" => heard.response_format = value,
                Part::Field { .. } => {}
                Part::FileStart { name, filename, .. } if name == "file" => {
                    heard.filename = filename;
                    file = true;
                }
                Part::FileStart { .. } => {}
                Part::FileEnd { name, span } if name == "file" => heard.size = span.end - span.start,
                Part::FileEnd { .. } => {}
            }
        }
    }
    scanner.finish().map_err(|e| e.0)?;
    if !file {
        return Err("the upload has no `file` part".into());
    }
    if heard.model.is_empty() {
        return Err("you must provide a model parameter".into());
    }
    Ok(heard)
}

/// The answer to what was heard, and its media type.
pub(crate) fn answer(h: &Heard, translate: bool) -> Result<(Bytes, &'static str), String> {
    let verb = if translate { "translation" } else { "transcription" };
    let text = format!("Mock {verb} of {}: {} bytes of audio.", h.filename, h.size);
    let seconds = h.size.div_ceil(BYTES_PER_SECOND).max(1);
    let words = text.split_whitespace().count() as u64;
    let usage = if h.model.starts_with("whisper") {
        format!(r#"{{"type":"duration","seconds":{seconds}}}"#)
    } else {
        let audio = h.size.div_ceil(BYTES_PER_TOKEN);
        format!(
            r#"{{"type":"tokens","input_tokens":{audio},"input_token_details":{{"text_tokens":0,"audio_tokens":{audio}}},"output_tokens":{words},"total_tokens":{}}}"#,
            audio + words
        )
    };
    let quoted = sonic_rs::to_string(&text).map_err(|e| e.to_string())?;
    Ok(match h.response_format.as_str() {
        "json" => (Bytes::from(format!(r#"{{"text":{quoted},"usage":{usage}}}"#)), "application/json"),
        "verbose_json" => {
            let task = if translate { "translate" } else { "transcribe" };
            let body = format!(
                r#"{{"task":"{task}","language":"english","duration":{seconds},"text":{quoted},"segments":[{{"id":0,"seek":0,"start":0.0,"end":{seconds}.0,"text":{quoted},"tokens":[],"temperature":0.0,"avg_logprob":-0.1,"compression_ratio":1.0,"no_speech_prob":0.0}}],"usage":{usage}}}"#
            );
            (Bytes::from(body), "application/json")
        }
        "text" => (Bytes::from(format!("{text}\n")), "text/plain; charset=utf-8"),
        "srt" => (
            Bytes::from(format!("1\n00:00:00,000 --> {},000\n{text}\n\n", clock(seconds))),
            "text/plain; charset=utf-8",
        ),
        "vtt" => (
            Bytes::from(format!("WEBVTT\n\n00:00:00.000 --> {}.000\n{text}\n\n", clock(seconds))),
            "text/plain; charset=utf-8",
        ),
        other => {
            return Err(format!(
                "'{other}' is not one of ['json', 'text', 'srt', 'verbose_json', 'vtt'] - 'response_format'"
            ));
        }
    })
}

/// `hh:mm:ss`.
fn clock(s: u64) -> String {
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use sonic_rs::JsonValueTrait;

    use super::*;

    #[tokio::test]
    async fn an_upload_is_heard_and_answered() {
        let body = "--b\r\ncontent-disposition: form-data; name=\"file\"; filename=\"x.wav\"\r\n\r\n0123456789\r\n--b\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\ngpt-4o-transcribe\r\n--b--\r\n";
        let chunks =
            futures_util::stream::iter(body.as_bytes().chunks(5).map(|c| Ok::<_, String>(Bytes::copy_from_slice(c))));
        let h = hear("multipart/form-data; boundary=b", chunks).await.unwrap();
        assert_eq!((h.filename.as_str(), h.size, h.model.as_str()), ("x.wav", 10, "gpt-4o-transcribe"));
        let (b, ct) = answer(&h, false).unwrap();
        assert_eq!(ct, "application/json");
        let v: sonic_rs::Value = sonic_rs::from_slice(&b).unwrap();
        assert_eq!(v["text"].as_str(), Some("Mock transcription of x.wav: 10 bytes of audio."));
        assert_eq!(v["usage"]["input_tokens"].as_u64(), Some(1));
        let whisper = Heard { model: "whisper-1".into(), response_format: "text".into(), ..h };
        assert_eq!(answer(&whisper, true).unwrap().0, "Mock translation of x.wav: 10 bytes of audio.\n");
    }
}
