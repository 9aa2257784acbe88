//! A streamed answer's SSE events, written lazily one by one into a shared
//! buffer and split off, so a whole stream costs about one allocation.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Endpoint, GenRequest, push_head, push_token, push_usage};

/// The SSE events of a streamed answer, produced lazily; see [`stream_events`].
#[derive(Debug)]
pub struct StreamEvents {
    /// `data: {"id":..,"object":..,"created":..,"model":..,` — shared by every chunk.
    head: Vec<u8>,
    /// Events are written here and split off, so consecutive events share
    /// one allocation.
    buf: BytesMut,
    endpoint: Endpoint,
    include_usage: bool,
    seed: u64,
    prompt_tokens: u32,
    completion_tokens: u32,
    finish_reason: &'static str,
    /// Index of the next event.
    next: u32,
    total: u32,
}

/// The stream of `req`: for chat a role chunk (`role:"assistant"`,
/// `content:""`), then one chunk per token, a chunk with `finish_reason`,
/// the usage chunk (`choices: []`) only when `include_usage`, and
/// `data: [DONE]`. Completions have no role chunk. Each item is one whole
/// event `data: ...\n\n`.
pub fn stream_events(req: &GenRequest, id: &str, created: u64) -> StreamEvents {
    let object = match req.endpoint {
        Endpoint::Chat => "chat.completion.chunk",
        Endpoint::Completions => "text_completion",
    };
    let mut head = Vec::with_capacity(96 + id.len() + req.model.len());
    head.put_slice(b"data: ");
    push_head(&mut head, id, object, created, &req.model);
    let role = u32::from(req.endpoint == Endpoint::Chat);
    let include_usage = req.include_usage && req.usage;
    let total = role.saturating_add(req.completion_tokens).saturating_add(2 + u32::from(include_usage));
    // Room for the first several events; BytesMut grows in blocks after that.
    let per_event = head.len() + 112;
    let cap = (per_event * total.min(64) as usize).min(32 * 1024);
    StreamEvents {
        head,
        buf: BytesMut::with_capacity(cap),
        endpoint: req.endpoint,
        include_usage,
        seed: req.seed,
        prompt_tokens: req.prompt_tokens,
        completion_tokens: req.completion_tokens,
        finish_reason: req.finish_reason,
        next: 0,
        total,
    }
}

/// What event `i` of a stream is.
enum Ev {
    Role,
    Token(u32),
    Finish,
    Usage,
    Done,
}

impl StreamEvents {
    /// Number of events in the whole stream, `[DONE]` included.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Completion tokens among the events produced so far (one per token
    /// event), for the mock's count of what it produced.
    pub fn tokens_produced(&self) -> u32 {
        let role = u32::from(self.endpoint == Endpoint::Chat);
        self.next.saturating_sub(role).min(self.completion_tokens)
    }

    fn kind(&self, i: u32) -> Ev {
        let role = u32::from(self.endpoint == Endpoint::Chat);
        let n = self.completion_tokens;
        if i + 1 == self.total {
            Ev::Done
        } else if i < role {
            Ev::Role
        } else if i - role < n {
            Ev::Token(i - role)
        } else if i - role == n {
            Ev::Finish
        } else {
            Ev::Usage
        }
    }

    fn write(&mut self, ev: Ev) {
        let b = &mut self.buf;
        if let Ev::Done = ev {
            b.put_slice(b"data: [DONE]\n\n");
            return;
        }
        b.reserve(self.head.len() + 128);
        b.put_slice(&self.head);
        let chat = self.endpoint == Endpoint::Chat;
        match ev {
            Ev::Role => b.put_slice(
                b"\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]",
            ),
            Ev::Token(t) => {
                b.put_slice(if chat {
                    b"\"choices\":[{\"index\":0,\"delta\":{\"content\":\""
                } else {
                    b"\"choices\":[{\"text\":\""
                });
                push_token(b, self.seed, t);
                b.put_slice(if chat {
                    b"\"},\"logprobs\":null,\"finish_reason\":null}]"
                } else {
                    b"\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]"
                });
            }
            Ev::Finish => {
                b.put_slice(if chat {
                    b"\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\""
                } else {
                    b"\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\""
                });
                b.put_slice(self.finish_reason.as_bytes());
                b.put_slice(b"\"}]");
            }
            Ev::Usage => {
                b.put_slice(b"\"choices\":[],\"usage\":");
                let (p, c) = (self.prompt_tokens, self.completion_tokens);
                push_usage(b, u64::from(p), Some(u64::from(c)));
                b.put_slice(b"}\n\n");
                return;
            }
            Ev::Done => {}
        }
        if self.include_usage {
            b.put_slice(b",\"usage\":null");
        }
        b.put_slice(b"}\n\n");
    }
}

impl Iterator for StreamEvents {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.next >= self.total {
            return None;
        }
        let ev = self.kind(self.next);
        self.next += 1;
        self.write(ev);
        Some(self.buf.split().freeze())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.total - self.next) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for StreamEvents {}
