//! A stored conversation as bytes, the same for the redb file and Redis:
//! a version byte, the Unix ms it was stored (u64 LE), then the owner, the
//! Response and the items, each as a u32 LE length and its bytes. Anything
//! else (another version, a truncated value) reads as absent.

use bytes::{BufMut, Bytes, BytesMut};

use super::state::Conversation;

const VERSION: u8 = 1;

pub fn encode(c: &Conversation) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(1 + 8 + 12 + c.owner.len() + c.response.len() + c.items.len());
    b.put_u8(VERSION);
    b.put_u64_le(c.stored_unix_ms);
    for part in [c.owner.as_bytes(), &c.response[..], &c.items[..]] {
        b.put_u32_le(u32::try_from(part.len()).unwrap_or(u32::MAX));
        b.put_slice(part);
    }
    b.to_vec()
}

pub fn decode(raw: &[u8]) -> Option<Conversation> {
    let (&version, rest) = raw.split_first()?;
    if version != VERSION {
        return None;
    }
    let (stored, mut rest) = rest.split_at_checked(8)?;
    let stored_unix_ms = u64::from_le_bytes(stored.try_into().ok()?);
    let mut parts: [&[u8]; 3] = [&[]; 3];
    for part in &mut parts {
        let (len, tail) = rest.split_at_checked(4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let (bytes, tail) = tail.split_at_checked(len)?;
        *part = bytes;
        rest = tail;
    }
    if !rest.is_empty() {
        return None;
    }
    let [owner, response, items] = parts;
    Some(Conversation {
        owner: String::from_utf8(owner.to_vec()).ok()?,
        response: Bytes::copy_from_slice(response),
        items: Bytes::copy_from_slice(items),
        stored_unix_ms,
    })
}

/// Now, in Unix ms.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_junk_is_absent() {
        let c = Conversation {
            owner: "team-a".into(),
            response: Bytes::from_static(b"{\"id\":\"resp_1\"}"),
            items: Bytes::from_static(b"[]"),
            stored_unix_ms: 1_700_000_000_123,
        };
        let raw = encode(&c);
        assert_eq!(decode(&raw), Some(c));
        assert_eq!(decode(&raw[..raw.len() - 1]), None);
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"\x09rest"), None);
        let mut long = raw.clone();
        long.push(0);
        assert_eq!(decode(&long), None);
    }
}
