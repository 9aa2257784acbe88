//! Answer ids, as OpenAI formats them.

use super::generate::Endpoint;

/// `chatcmpl-mock<16 hex>` / `cmpl-mock<16 hex>`, formatted on the stack.
pub(super) struct Id {
    buf: [u8; 32],
    len: usize,
}

impl Id {
    pub(super) fn new(endpoint: Endpoint) -> Id {
        let prefix: &[u8] = match endpoint {
            Endpoint::Chat => b"chatcmpl-mock",
            Endpoint::Completions => b"cmpl-mock",
        };
        let mut buf = [0u8; 32];
        buf[..prefix.len()].copy_from_slice(prefix);
        let mut n = fastrand::u64(..);
        for i in (prefix.len()..prefix.len() + 16).rev() {
            buf[i] = b"0123456789abcdef"[(n & 0xf) as usize];
            n >>= 4;
        }
        Id { buf, len: prefix.len() + 16 }
    }

    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("mock")
    }
}
