//! The mock's Files and Batch APIs: an in-memory file store, and batches
//! that really run their input file's lines through the mock's generator
//! and write an output file. Shapes as the API reference shows them
//! (https://platform.openai.com/docs/api-reference/files,
//! https://platform.openai.com/docs/api-reference/batch).
//!
//! A batch moves one step each time it is read — `validating`, then
//! `in_progress`, then (its lines run) `completed` — so a client polling
//! it sees the lifecycle without the mock keeping a timer.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;
use sonic_rs::{JsonValueTrait, Value, json};

use super::generate::{self, GenError};
use crate::multipart::{Part, Scanner};

/// One answer: status, media type, body.
pub(crate) struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Answer {
    fn json(status: u16, v: &Value) -> Answer {
        Answer { status, content_type: "application/json", body: Bytes::from(v.to_string()) }
    }

    fn error(status: u16, message: &str, param: Option<&str>) -> Answer {
        let v = json!({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": null}});
        Answer::json(status, &v)
    }
}

/// The Files and Batch API operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Upload,
    ListFiles,
    GetFile(String),
    Content(String),
    DeleteFile(String),
    CreateBatch,
    ListBatches,
    GetBatch(String),
    CancelBatch(String),
}

impl Op {
    /// The operation of `method` on `path` (below `/v1`, no query), if any.
    pub(crate) fn route(method: &str, path: &str) -> Option<Op> {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        Some(match (method, segs.as_slice()) {
            ("POST", ["files"]) => Op::Upload,
            ("GET", ["files"]) => Op::ListFiles,
            ("GET", ["files", id]) => Op::GetFile((*id).to_string()),
            ("DELETE", ["files", id]) => Op::DeleteFile((*id).to_string()),
            ("GET", ["files", id, "content"]) => Op::Content((*id).to_string()),
            ("POST", ["batches"]) => Op::CreateBatch,
            ("GET", ["batches"]) => Op::ListBatches,
            ("GET", ["batches", id]) => Op::GetBatch((*id).to_string()),
            ("POST", ["batches", id, "cancel"]) => Op::CancelBatch((*id).to_string()),
            _ => return None,
        })
    }
}

struct StoredFile {
    filename: String,
    purpose: String,
    created_at: u64,
    bytes: Bytes,
}

struct Batch {
    endpoint: String,
    input_file_id: String,
    completion_window: String,
    status: &'static str,
    created_at: u64,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    counts: (u64, u64, u64),
    metadata: Value,
}

#[derive(Default)]
struct Inner {
    files: BTreeMap<String, StoredFile>,
    batches: BTreeMap<String, Batch>,
    next: u64,
}

impl Inner {
    fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}-mock{:08x}{:06}", fastrand::u32(..), self.next)
    }
}

/// One mock's files and batches.
#[derive(Default)]
pub(crate) struct FileStore {
    inner: Mutex<Inner>,
}

/// Words per generated batch answer.
const BATCH_TOKENS: u32 = 8;

impl FileStore {
    /// Answer `op`; `body` is the request's (a multipart upload for `Upload`).
    pub(crate) fn handle(&self, op: &Op, content_type: &str, body: &[u8]) -> Answer {
        let Ok(mut s) = self.inner.lock() else {
            return Answer::error(500, "the mock's file store is unusable", None);
        };
        let s = &mut *s;
        match op {
            Op::Upload => upload(s, content_type, body),
            Op::ListFiles => {
                let data: Vec<Value> = s.files.iter().map(|(id, f)| file_json(id, f)).collect();
                Answer::json(200, &json!({"object": "list", "data": data, "has_more": false}))
            }
            Op::GetFile(id) => match s.files.get(id) {
                Some(f) => Answer::json(200, &file_json(id, f)),
                None => no_file(id),
            },
            Op::Content(id) => match s.files.get(id) {
                Some(f) => Answer { status: 200, content_type: "application/octet-stream", body: f.bytes.clone() },
                None => no_file(id),
            },
            Op::DeleteFile(id) => match s.files.remove(id) {
                Some(_) => Answer::json(200, &json!({"id": id, "object": "file", "deleted": true})),
                None => no_file(id),
            },
            Op::CreateBatch => create_batch(s, body),
            Op::ListBatches => {
                let data: Vec<Value> = s.batches.iter().map(|(id, b)| batch_json(id, b)).collect();
                Answer::json(200, &json!({"object": "list", "data": data, "has_more": false}))
            }
            Op::GetBatch(id) => {
                let Some(b) = s.batches.get_mut(id) else { return no_batch(id) };
                let step = match b.status {
                    "validating" => Some("in_progress"),
                    "in_progress" => Some("completed"),
                    _ => None,
                };
                if step == Some("in_progress") {
                    b.status = "in_progress";
                } else if step == Some("completed") {
                    run_batch(s, id);
                }
                match s.batches.get(id) {
                    Some(b) => Answer::json(200, &batch_json(id, b)),
                    None => no_batch(id),
                }
            }
            Op::CancelBatch(id) => match s.batches.get_mut(id) {
                Some(b) => {
                    if b.status != "completed" {
                        b.status = "cancelled";
                    }
                    Answer::json(200, &batch_json(id, b))
                }
                None => no_batch(id),
            },
        }
    }
}

fn no_file(id: &str) -> Answer {
    Answer::error(404, &format!("No such File object: {id}"), Some("id"))
}

fn no_batch(id: &str) -> Answer {
    Answer::error(404, &format!("No batch found with id '{id}'."), Some("batch_id"))
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn upload(s: &mut Inner, content_type: &str, body: &[u8]) -> Answer {
    let Some(boundary) = Scanner::boundary(content_type) else {
        return Answer::error(400, "expected multipart/form-data with a boundary", None);
    };
    let mut scanner = Scanner::new(&boundary, &["purpose"]);
    let mut parts = Vec::new();
    if let Err(e) = scanner.feed(body, &mut parts).and_then(|()| scanner.finish()) {
        return Answer::error(400, &e.0, None);
    }
    let (mut purpose, mut filename, mut span) = (None, None, None);
    for p in parts {
        match p {
            Part::Field { name, value, .. } if name == "purpose" => purpose = Some(value),
            Part::FileStart { name, filename: f, .. } if name == "file" => filename = Some(f),
            Part::FileEnd { name, span: sp } if name == "file" => span = Some(sp),
            _ => {}
        }
    }
    let Some(purpose) = purpose else {
        return Answer::error(400, "Missing required parameter: 'purpose'.", Some("purpose"));
    };
    let (Some(filename), Some(span)) = (filename, span) else {
        return Answer::error(400, "Missing required parameter: 'file'.", Some("file"));
    };
    let bytes = Bytes::copy_from_slice(&body[span.start as usize..span.end as usize]);
    let id = s.id("file");
    let f = StoredFile { filename, purpose, created_at: now(), bytes };
    let a = Answer::json(200, &file_json(&id, &f));
    s.files.insert(id, f);
    a
}

fn file_json(id: &str, f: &StoredFile) -> Value {
    json!({"id": id, "object": "file", "bytes": f.bytes.len(), "created_at": f.created_at,
        "filename": f.filename, "purpose": f.purpose, "status": "processed", "status_details": null})
}

fn batch_json(id: &str, b: &Batch) -> Value {
    let done = (b.status == "completed").then_some(b.created_at);
    json!({"id": id, "object": "batch", "endpoint": b.endpoint, "errors": null,
        "input_file_id": b.input_file_id, "completion_window": b.completion_window, "status": b.status,
        "output_file_id": b.output_file_id, "error_file_id": b.error_file_id, "created_at": b.created_at,
        "in_progress_at": (b.status != "validating").then_some(b.created_at), "expires_at": b.created_at + 86_400,
        "finalizing_at": done, "completed_at": done, "failed_at": null, "expired_at": null, "cancelling_at": null,
        "cancelled_at": (b.status == "cancelled").then_some(b.created_at),
        "request_counts": {"total": b.counts.0, "completed": b.counts.1, "failed": b.counts.2},
        "metadata": b.metadata})
}

const BATCH_ENDPOINTS: [&str; 3] = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"];

fn create_batch(s: &mut Inner, body: &[u8]) -> Answer {
    let Ok(v) = sonic_rs::from_slice::<Value>(body) else {
        return Answer::error(400, "We could not parse the JSON body of your request.", None);
    };
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let Some(input_file_id) = field("input_file_id") else {
        return Answer::error(400, "Missing required parameter: 'input_file_id'.", Some("input_file_id"));
    };
    let endpoint = field("endpoint").unwrap_or_default();
    if !BATCH_ENDPOINTS.contains(&endpoint.as_str()) {
        return Answer::error(
            400,
            &format!("Invalid endpoint '{endpoint}'; use one of {BATCH_ENDPOINTS:?}."),
            Some("endpoint"),
        );
    }
    match s.files.get(&input_file_id) {
        Some(f) if f.purpose == "batch" => {}
        Some(_) => return Answer::error(400, "The input file must have purpose 'batch'.", Some("input_file_id")),
        None => return no_file(&input_file_id),
    }
    let id = s.id("batch");
    let b = Batch {
        endpoint,
        input_file_id,
        completion_window: field("completion_window").unwrap_or_else(|| "24h".into()),
        status: "validating",
        created_at: now(),
        output_file_id: None,
        error_file_id: None,
        counts: (0, 0, 0),
        metadata: v.get("metadata").cloned().unwrap_or_default(),
    };
    let a = Answer::json(200, &batch_json(&id, &b));
    s.batches.insert(id, b);
    a
}

/// Run every line of the batch's input file; store the output (and error) file.
fn run_batch(s: &mut Inner, id: &str) {
    let Some(b) = s.batches.get(id) else { return };
    let input = s.files.get(&b.input_file_id).map(|f| f.bytes.clone()).unwrap_or_default();
    let endpoint = b.endpoint.clone();
    let (mut out, mut errs, mut counts) = (Vec::new(), Vec::new(), (0u64, 0u64, 0u64));
    for (n, line) in input.split(|c| *c == b'\n').filter(|l| !l.trim_ascii().is_empty()).enumerate() {
        counts.0 += 1;
        let req: Option<Value> = sonic_rs::from_slice(line).ok();
        let custom_id =
            req.as_ref().and_then(|r| r.get("custom_id")).and_then(|c| c.as_str()).unwrap_or("").to_string();
        match run_line(req.as_ref(), &endpoint, n) {
            Ok(body) => {
                counts.1 += 1;
                out.push(json!({"id": format!("batch_req_{n}"), "custom_id": custom_id,
                    "response": {"status_code": 200, "request_id": format!("req_{n}"), "body": body}, "error": null}));
            }
            Err(e) => {
                counts.2 += 1;
                errs.push(json!({"id": format!("batch_req_{n}"), "custom_id": custom_id, "response": null,
                    "error": {"code": "invalid_request", "message": e.message}}));
            }
        }
    }
    let mut file = |lines: Vec<Value>, name: &str| {
        (!lines.is_empty()).then(|| {
            let mut text = String::new();
            for l in lines {
                text.push_str(&l.to_string());
                text.push('\n');
            }
            let fid = s.id("file");
            let f = StoredFile {
                filename: format!("{id}_{name}.jsonl"),
                purpose: "batch_output".into(),
                created_at: now(),
                bytes: Bytes::from(text),
            };
            s.files.insert(fid.clone(), f);
            fid
        })
    };
    let output = file(out, "output");
    let error = file(errs, "error");
    if let Some(b) = s.batches.get_mut(id) {
        b.status = "completed";
        b.output_file_id = output;
        b.error_file_id = error;
        b.counts = counts;
    }
}

/// One input line's answer, through the mock's generator.
fn run_line(req: Option<&Value>, endpoint: &str, n: usize) -> Result<Value, GenError> {
    let req = req.ok_or_else(|| GenError::new("the line is not JSON", None))?;
    let url = req.get("url").and_then(|u| u.as_str()).unwrap_or("");
    if url != endpoint {
        return Err(GenError::new(
            format!("the line's url '{url}' is not the batch's endpoint '{endpoint}'"),
            Some("url"),
        ));
    }
    let body =
        req.get("body").filter(|b| b.is_object()).ok_or_else(|| GenError::new("the line has no body", Some("body")))?;
    let bytes = body.to_string();
    let answer = match endpoint {
        "/v1/embeddings" => generate::embeddings_body(bytes.as_bytes())?,
        _ => {
            let e =
                if endpoint == "/v1/completions" { generate::Endpoint::Completions } else { generate::Endpoint::Chat };
            let g = generate::parse_request(e, bytes.as_bytes(), BATCH_TOKENS, None)?;
            generate::completion_body(&g, &format!("chatcmpl-batch{n}"), now())
        }
    };
    sonic_rs::from_slice(&answer).map_err(|e| GenError::new(e.to_string(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_runs_its_lines_and_writes_its_output() {
        let store = FileStore::default();
        let input = "{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}\n{\"custom_id\":\"b\",\"method\":\"POST\",\"url\":\"/v1/embeddings\",\"body\":{}}\n";
        let body = format!(
            "--q\r\ncontent-disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--q\r\ncontent-disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\r\n{input}\r\n--q--\r\n"
        );
        let a = store.handle(&Op::Upload, "multipart/form-data; boundary=q", body.as_bytes());
        assert_eq!(a.status, 200);
        let f: Value = sonic_rs::from_slice(&a.body).unwrap();
        let fid = f["id"].as_str().unwrap().to_string();
        assert_eq!(f["bytes"].as_u64(), Some(input.len() as u64));
        let create =
            format!(r#"{{"input_file_id":"{fid}","endpoint":"/v1/chat/completions","completion_window":"24h"}}"#);
        let b: Value = sonic_rs::from_slice(&store.handle(&Op::CreateBatch, "", create.as_bytes()).body).unwrap();
        assert_eq!(b["status"].as_str(), Some("validating"));
        let bid = b["id"].as_str().unwrap().to_string();
        let mut statuses = Vec::new();
        let done = loop {
            let b: Value = sonic_rs::from_slice(&store.handle(&Op::GetBatch(bid.clone()), "", b"").body).unwrap();
            statuses.push(b["status"].as_str().unwrap().to_string());
            if b["status"].as_str() == Some("completed") {
                break b;
            }
            assert!(statuses.len() < 5, "{statuses:?}");
        };
        assert_eq!(statuses, ["in_progress", "completed"]);
        assert_eq!(done["request_counts"]["completed"].as_u64(), Some(1));
        assert_eq!(done["request_counts"]["failed"].as_u64(), Some(1));
        let out = store.handle(&Op::Content(done["output_file_id"].as_str().unwrap().to_string()), "", b"");
        let line: Value = sonic_rs::from_slice(out.body.split(|c| *c == b'\n').next().unwrap()).unwrap();
        assert_eq!(line["custom_id"].as_str(), Some("a"));
        assert_eq!(line["response"]["body"]["object"].as_str(), Some("chat.completion"));
        assert_eq!(store.handle(&Op::GetFile("file-nope".into()), "", b"").status, 404);
    }
}
