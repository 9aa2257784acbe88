//! Redis as the response cache's second tier: answers one replica fetched
//! are hits on every other.
//!
//! An entry is the answer in both shapes (the same [`StoredAnswer`] the
//! in-process tier keeps), stored with `SET .. PX ttl` so Redis expires it,
//! and the Unix time it was first stored, so a client's `max-age` is judged
//! against the answer's real age, not the time it reached this replica.
//! Encoding: version byte, stored-at (ms, u64 LE), then body, events and
//! usage event, each as a u32 LE length and its bytes. Anything else under
//! the key (another version, a truncated value) is treated as a miss.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::{CacheKey, StoredAnswer};

const VERSION: u8 = 1;

/// A hit from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub answer: StoredAnswer,
    pub age: Duration,
    /// Until Redis expires it.
    pub ttl_left: Duration,
}

pub fn redis_key(prefix: &str, key: CacheKey) -> String {
    format!("{prefix}:cache:{key:032x}")
}

pub fn encode(answer: &StoredAnswer, stored_unix_ms: u64) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(1 + 8 + 12 + answer.size());
    b.put_u8(VERSION);
    b.put_u64_le(stored_unix_ms);
    for part in [&answer.body, &answer.events, &answer.usage_event] {
        b.put_u32_le(u32::try_from(part.len()).unwrap_or(u32::MAX));
        b.put_slice(part);
    }
    b.to_vec()
}

/// The answer and when it was stored (Unix ms), or `None` for anything
/// that is not an entry this version wrote.
pub fn decode(raw: &[u8]) -> Option<(StoredAnswer, u64)> {
    let (&version, rest) = raw.split_first()?;
    if version != VERSION {
        return None;
    }
    let (stored, mut rest) = rest.split_at_checked(8)?;
    let stored = u64::from_le_bytes(stored.try_into().ok()?);
    let mut parts: [Bytes; 3] = Default::default();
    for part in &mut parts {
        let (len, tail) = rest.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let (bytes, tail) = tail.split_at_checked(len)?;
        *part = Bytes::copy_from_slice(bytes);
        rest = tail;
    }
    if !rest.is_empty() {
        return None;
    }
    let [body, events, usage_event] = parts;
    Some((StoredAnswer { body, events, usage_event }, stored))
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_junk_is_a_miss() {
        let a = StoredAnswer {
            body: Bytes::from_static(b"{\"id\":1}"),
            events: Bytes::from_static(b"data: {}\n\n"),
            usage_event: Bytes::new(),
        };
        let raw = encode(&a, 1_700_000_000_123);
        assert_eq!(decode(&raw), Some((a, 1_700_000_000_123)));
        assert_eq!(decode(&raw[..raw.len() - 1]), None, "truncated");
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"\x02rest"), None, "another version");
        let mut long = raw.clone();
        long.push(0);
        assert_eq!(decode(&long), None, "trailing bytes");
        assert_eq!(redis_key("sluice", 0xab), "sluice:cache:000000000000000000000000000000ab");
    }
}
