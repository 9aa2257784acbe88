//! The conversations in Redis, when replicas share state (`[shared]`): a
//! conversation stored by one replica is continued on another.
//!
//! Each entry is one key, `{prefix}:response:{id}` ([`codec`] encoding),
//! written with `PX ttl` so Redis expires it. The byte bound is kept by a
//! Lua script, atomically with the write: a sorted set orders the ids by
//! the time they were stored, a hash holds each one's size, a counter the
//! total; entries past the TTL and then the oldest are dropped until the
//! total fits `max_bytes`. (Lua names the entry keys it drops, so the
//! entries and their index must live on one Redis node: a plain or
//! Sentinel Redis, not a Redis Cluster.)

use std::sync::Arc;

use redis::Script;

use super::codec;
use super::state::{Conversation, Limits};
use crate::replicas::{Link, LinkError};

/// Drop an id everywhere; store the new entry; trim to the bound.
const PUT: &str = r#"
local order, sizes, total = KEYS[1], KEYS[2], KEYS[3]
local id, value, ttl, now, max, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local function drop(m)
  local size = tonumber(redis.call('HGET', sizes, m) or '0')
  redis.call('HDEL', sizes, m)
  redis.call('ZREM', order, m)
  redis.call('DEL', prefix .. m)
  redis.call('DECRBY', total, size)
end
drop(id)
for _, m in ipairs(redis.call('ZRANGEBYSCORE', order, '-inf', now - ttl, 'LIMIT', 0, 256)) do drop(m) end
local size = string.len(value) + string.len(id)
redis.call('SET', prefix .. id, value, 'PX', ttl)
redis.call('ZADD', order, now, id)
redis.call('HSET', sizes, id, size)
local used = redis.call('INCRBY', total, size)
local evicted = 0
while used > max do
  local oldest = redis.call('ZRANGE', order, 0, 0)[1]
  if (not oldest) or oldest == id then break end
  drop(oldest)
  evicted = evicted + 1
  used = tonumber(redis.call('GET', total) or '0')
end
return evicted
"#;

/// Drop an id everywhere; 1 if it was there.
const DELETE: &str = r#"
local order, sizes, total = KEYS[1], KEYS[2], KEYS[3]
local id, prefix = ARGV[1], ARGV[2]
if redis.call('HEXISTS', sizes, id) == 0 then return redis.call('DEL', prefix .. id) end
local size = tonumber(redis.call('HGET', sizes, id) or '0')
redis.call('HDEL', sizes, id)
redis.call('ZREM', order, id)
redis.call('DECRBY', total, size)
return redis.call('DEL', prefix .. id)
"#;

#[derive(Clone)]
pub struct SharedConversations {
    link: Arc<Link>,
    /// `{prefix}:response:`, before each id.
    entry_prefix: String,
    index: [String; 3],
    put: Arc<Script>,
    delete: Arc<Script>,
}

impl SharedConversations {
    pub fn new(link: Arc<Link>, prefix: &str) -> SharedConversations {
        SharedConversations {
            link,
            entry_prefix: format!("{prefix}:response:"),
            index: [
                format!("{prefix}:responses:order"),
                format!("{prefix}:responses:sizes"),
                format!("{prefix}:responses:bytes"),
            ],
            put: Arc::new(Script::new(PUT)),
            delete: Arc::new(Script::new(DELETE)),
        }
    }

    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    pub async fn get(&self, id: &str) -> Result<Option<Conversation>, LinkError> {
        let key = format!("{}{id}", self.entry_prefix);
        let raw: Option<Vec<u8>> =
            self.link.call(|mut c| async move { redis::cmd("GET").arg(&key).query_async(&mut c).await }).await?;
        Ok(raw.as_deref().and_then(codec::decode))
    }

    /// Store an entry; how many older ones it evicted.
    pub async fn put(&self, id: &str, c: &Conversation, limits: Limits) -> Result<u64, LinkError> {
        let value = codec::encode(c);
        let ttl_ms = u64::try_from(limits.ttl.as_millis()).unwrap_or(u64::MAX);
        let script = self.put.clone();
        let (keys, prefix) = (self.index.clone(), self.entry_prefix.clone());
        self.link
            .call(|mut conn| async move {
                let mut inv = script.prepare_invoke();
                inv.key(&keys[0]).key(&keys[1]).key(&keys[2]);
                inv.arg(id).arg(value).arg(ttl_ms).arg(c.stored_unix_ms).arg(limits.max_bytes as u64).arg(prefix);
                inv.invoke_async(&mut conn).await
            })
            .await
    }

    pub async fn delete(&self, id: &str) -> Result<bool, LinkError> {
        let script = self.delete.clone();
        let (keys, prefix) = (self.index.clone(), self.entry_prefix.clone());
        let n: i64 = self
            .link
            .call(|mut conn| async move {
                let mut inv = script.prepare_invoke();
                inv.key(&keys[0]).key(&keys[1]).key(&keys[2]).arg(id).arg(prefix);
                inv.invoke_async(&mut conn).await
            })
            .await?;
        Ok(n > 0)
    }
}
