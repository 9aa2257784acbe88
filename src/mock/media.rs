//! The mock's answers on OpenAI's other routes teams call:
//! `POST /v1/images/generations`, `POST /v1/moderations` and
//! `POST /v1/audio/speech`, so the gateway's forwarding of them runs
//! offline. Answers are deterministic (derived from the request's words)
//! and shaped as the API reference shows them:
//! https://platform.openai.com/docs/api-reference/images/create,
//! https://platform.openai.com/docs/api-reference/moderations/create,
//! https://platform.openai.com/docs/api-reference/audio/createSpeech.

use bytes::Bytes;
use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

use super::generate::GenError;

/// A fixed `created`, so answers are byte-for-byte stable.
const CREATED: u64 = 1_700_000_000;

/// Most images one request may ask for (OpenAI's limit too).
const MAX_IMAGES: u64 = 10;

/// Image tokens the mock reports per generated image.
const IMAGE_TOKENS: u64 = 272;

/// The smallest valid PNG (1×1, transparent), base64: every mock image.
const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

/// Most characters of speech input (OpenAI's limit too).
const MAX_SPEECH_CHARS: usize = 4096;

/// The moderation categories OpenAI reports, in its order.
const CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// An input the mock flags, so a test can tell its verdict came back: the
/// word `mock-flagged` anywhere in a text flags it as `violence`.
const FLAG_WORD: &str = "mock-flagged";

/// The routes this module answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media {
    Images,
    Moderations,
    Speech,
}

impl Media {
    pub(crate) fn route(path: &str) -> Option<Media> {
        match path {
            "/images/generations" => Some(Media::Images),
            "/moderations" => Some(Media::Moderations),
            "/audio/speech" => Some(Media::Speech),
            _ => None,
        }
    }
}

/// The answer to `m` and its media type.
pub(crate) fn answer(m: Media, body: &[u8]) -> Result<(Bytes, &'static str), GenError> {
    match m {
        Media::Images => images(body).map(|b| (b, "application/json")),
        Media::Moderations => moderations(body).map(|b| (b, "application/json")),
        Media::Speech => speech(body),
    }
}

fn parse(body: &[u8]) -> Result<Value, GenError> {
    sonic_rs::from_slice::<Value>(body)
        .ok()
        .filter(|v| v.is_object())
        .ok_or_else(|| GenError::new("We could not parse the JSON body of your request.", None))
}

fn required_str<'a>(v: &'a Value, key: &'static str) -> Result<&'a str, GenError> {
    match v.get(key) {
        None => Err(GenError::new(format!("Missing required parameter: '{key}'."), Some(key))),
        Some(s) => {
            s.as_str().ok_or_else(|| GenError::new(format!("Invalid type for '{key}': expected a string."), Some(key)))
        }
    }
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// `POST /v1/images/generations`: `n` 1×1 PNGs, as `b64_json` or (with
/// `response_format: "url"`) as URLs that say they are the mock's, with
/// GPT Image's `usage` (the prompt's words in, a fixed count per image out).
pub(crate) fn images(body: &[u8]) -> Result<Bytes, GenError> {
    let v = parse(body)?;
    let prompt = required_str(&v, "prompt")?;
    let n = match v.get("n") {
        None => 1,
        Some(n) => n.as_u64().filter(|n| (1..=MAX_IMAGES).contains(n)).ok_or_else(|| {
            GenError::new(format!("Invalid 'n': expected an integer from 1 to {MAX_IMAGES}."), Some("n"))
        })?,
    };
    let url = match v.get("response_format").map(|f| f.as_str()) {
        None | Some(Some("b64_json")) => false,
        Some(Some("url")) => true,
        Some(_) => {
            return Err(GenError::new(
                "Invalid 'response_format': expected 'url' or 'b64_json'.",
                Some("response_format"),
            ));
        }
    };
    let revised = quoted(prompt);
    let data: Vec<String> = (0..n)
        .map(|i| match url {
            true => format!(r#"{{"url":"https://mock.sluice.invalid/images/{i}.png","revised_prompt":{revised}}}"#),
            false => format!(r#"{{"b64_json":"{PNG_1X1}","revised_prompt":{revised}}}"#),
        })
        .collect();
    let (input, output) = (words(prompt), n * IMAGE_TOKENS);
    let total = input + output;
    Ok(Bytes::from(format!(
        r#"{{"created":{CREATED},"data":[{}],"usage":{{"input_tokens":{input},"output_tokens":{output},"total_tokens":{total},"input_tokens_details":{{"text_tokens":{input},"image_tokens":0}}}}}}"#,
        data.join(",")
    )))
}

/// `s` as a JSON string.
fn quoted(s: &str) -> String {
    sonic_rs::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// `POST /v1/moderations`: one result per input (a string, an array of
/// strings, or multi-modal parts, whose texts are read); nothing is flagged
/// but a text containing [`FLAG_WORD`], flagged as violence.
pub(crate) fn moderations(body: &[u8]) -> Result<Bytes, GenError> {
    let v = parse(body)?;
    let input = v.get("input").ok_or_else(|| GenError::new("Missing required parameter: 'input'.", Some("input")))?;
    let texts: Vec<String> = if let Some(s) = input.as_str() {
        vec![s.to_owned()]
    } else if let Some(items) = input.as_array() {
        items
            .iter()
            .map(|item| match item.as_str() {
                Some(s) => s.to_owned(),
                None => item.get("text").and_then(|t| t.as_str()).unwrap_or("").to_owned(),
            })
            .collect()
    } else {
        return Err(GenError::new("Invalid type for 'input': expected a string or an array.", Some("input")));
    };
    let model = v.get("model").and_then(|m| m.as_str()).unwrap_or("omni-moderation-latest").to_owned();
    let results: Vec<String> = texts
        .iter()
        .map(|t| {
            let flagged = t.contains(FLAG_WORD);
            let hit = |c: &str| flagged && c == "violence";
            let categories: Vec<String> = CATEGORIES.iter().map(|c| format!(r#""{c}":{}"#, hit(c))).collect();
            let scores: Vec<String> =
                CATEGORIES.iter().map(|c| format!(r#""{c}":{}"#, if hit(c) { "0.97" } else { "0.0001" })).collect();
            format!(
                r#"{{"flagged":{flagged},"categories":{{{}}},"category_scores":{{{}}}}}"#,
                categories.join(","),
                scores.join(",")
            )
        })
        .collect();
    let id = format!("modr-mock{:016x}", xxhash_rust::xxh3::xxh3_64(body));
    Ok(Bytes::from(format!(r#"{{"id":"{id}","model":{},"results":[{}]}}"#, quoted(&model), results.join(","))))
}

/// `POST /v1/audio/speech`: silence, as long as the input is wordy (a
/// quarter second a word), in the asked `response_format` with its media
/// type. The mock writes `mp3` (the default), `wav` and `pcm`; another
/// format is refused rather than answered in the wrong one.
pub(crate) fn speech(body: &[u8]) -> Result<(Bytes, &'static str), GenError> {
    let v = parse(body)?;
    required_str(&v, "model")?;
    let input = required_str(&v, "input")?;
    if input.chars().count() > MAX_SPEECH_CHARS {
        return Err(GenError::new(format!("Invalid 'input': at most {MAX_SPEECH_CHARS} characters."), Some("input")));
    }
    match v.get("voice") {
        Some(voice) if voice.is_str() || voice.is_object() => {}
        Some(_) => return Err(GenError::new("Invalid type for 'voice'.", Some("voice"))),
        None => return Err(GenError::new("Missing required parameter: 'voice'.", Some("voice"))),
    }
    let quarters = words(input).clamp(1, 4 * 60);
    match v.get("response_format").map(|f| f.as_str()) {
        None | Some(Some("mp3")) => Ok((mp3_silence(quarters), "audio/mpeg")),
        Some(Some("wav")) => Ok((wav_silence(quarters), "audio/wav")),
        Some(Some("pcm")) => Ok((Bytes::from(vec![0u8; pcm_len(quarters)]), "audio/pcm")),
        Some(_) => Err(GenError::new(
            "Invalid 'response_format': the mock writes 'mp3', 'wav' and 'pcm'.",
            Some("response_format"),
        )),
    }
}

/// Bytes of 24 kHz 16-bit mono PCM (OpenAI's `pcm`) for `quarters` quarter seconds.
fn pcm_len(quarters: u64) -> usize {
    (quarters as usize) * 24_000 / 4 * 2
}

fn wav_silence(quarters: u64) -> Bytes {
    let data = pcm_len(quarters) as u32;
    let mut out = Vec::with_capacity(44 + data as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&24_000u32.to_le_bytes()); // sample rate
    out.extend_from_slice(&48_000u32.to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    out.resize(44 + data as usize, 0);
    Bytes::from(out)
}

/// MPEG-1 Layer III frames, 128 kbit/s at 44.1 kHz (417 bytes, 26 ms
/// each), whose zero side information decodes as silence.
fn mp3_silence(quarters: u64) -> Bytes {
    const FRAME: usize = 417;
    let frames = (quarters as usize * 250).div_ceil(26);
    let mut out = vec![0u8; frames * FRAME];
    for f in out.chunks_exact_mut(FRAME) {
        f[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_answer_n_images_with_usage() {
        let b = images(br#"{"model":"gpt-image-1","prompt":"a red fox","n":2}"#).unwrap();
        let v: Value = sonic_rs::from_slice(&b).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
        assert_eq!(v["data"][0]["b64_json"].as_str(), Some(PNG_1X1));
        assert_eq!(v["usage"]["input_tokens"].as_u64(), Some(3));
        assert_eq!(v["usage"]["output_tokens"].as_u64(), Some(2 * IMAGE_TOKENS));
        let e = images(br#"{"model":"m","prompt":"x","n":11}"#).unwrap_err();
        assert_eq!(e.param, Some("n"));
        assert_eq!(images(br#"{"model":"m"}"#).unwrap_err().param, Some("prompt"));
    }

    #[test]
    fn moderations_flag_only_the_flag_word() {
        let b = moderations(br#"{"input":["fine text","this is mock-flagged"]}"#).unwrap();
        let v: Value = sonic_rs::from_slice(&b).unwrap();
        assert_eq!(v["results"][0]["flagged"].as_bool(), Some(false));
        assert_eq!(v["results"][1]["flagged"].as_bool(), Some(true));
        assert_eq!(v["results"][1]["categories"]["violence"].as_bool(), Some(true));
        assert_eq!(v["model"].as_str(), Some("omni-moderation-latest"));
        assert_eq!(moderations(br#"{"input":3}"#).unwrap_err().param, Some("input"));
    }

    #[test]
    fn speech_is_silence_in_the_asked_format() {
        let (b, t) = speech(br#"{"model":"tts-1","input":"hello there","voice":"alloy"}"#).unwrap();
        assert_eq!(t, "audio/mpeg");
        assert_eq!(&b[..2], &[0xFF, 0xFB]);
        assert_eq!(b.len() % 417, 0);
        let (w, t) = speech(br#"{"model":"tts-1","input":"hi","voice":"alloy","response_format":"wav"}"#).unwrap();
        assert_eq!(t, "audio/wav");
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(w.len(), 44 + pcm_len(1));
        let e = speech(br#"{"model":"tts-1","input":"hi","voice":"alloy","response_format":"opus"}"#).unwrap_err();
        assert_eq!(e.param, Some("response_format"));
        assert_eq!(speech(br#"{"model":"tts-1","input":"hi"}"#).unwrap_err().param, Some("voice"));
    }
}
