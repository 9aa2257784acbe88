//! Rate limits shared by every replica: the limiter backend of shared mode.
//!
//! **Every admission is one Lua script in Redis** ([`ADMIT`]): it reads the
//! TATs of all the request's scopes, runs the same exact GCRA step as the
//! in-process table (`rate_limiter::gcra`) for each, and writes them only if
//! every scope admits — all or none, atomically, because Redis runs a script
//! alone. Redis's own clock (`TIME`) is the clock, so replicas' clocks do not
//! matter. Two replicas can therefore never both take the last unit of a
//! limit: across any number of replicas, a limit of N per minute admits
//! exactly N in a burst.
//!
//! **The fast path** never admits on its own (that is what would let the
//! global limit be exceeded). It *refuses* on its own: every answer from
//! Redis carries the scopes' TATs, which are copied into the in-process
//! table (translated to its clock, using the time the call was *sent*, so
//! the copy is never ahead of Redis). TATs only grow between refunds, so if
//! the copy already refuses a request, Redis would too: a client hammering
//! a spent limit is answered 429 in process, without a round trip. The same
//! copy feeds the `x-ratelimit-*` headers.
//!
//! **Concurrency caps stay per replica** (a slot is held for the length of a
//! request; sharing it would need leases that expire when a replica dies).
//!
//! **When Redis is down or slow** (the link is down, or this call failed or
//! timed out), the request is decided by the in-process table exactly as
//! without shared mode, starting from the last TATs copied from Redis; the
//! link's prober brings Redis back in without a restart. Admissions made
//! meanwhile are not replayed into Redis: each replica enforces the whole
//! limit alone during an outage (docs/decisions/shared-state.md).
//!
//! Times are microseconds in Redis (Lua numbers are doubles: exact below
//! 2^53 µs, i.e. until the year 2255), so a limit's interval is rounded down
//! to a whole microsecond: N per minute is exact up to 60 million per minute.

use std::sync::Arc;

use redis::Script;

use super::link::Link;
use super::{Job, Writer};
use crate::rate_limiter::backend::{AdmitFuture, LimiterBackend};
use crate::rate_limiter::table::{Exceeded, Headroom, LimiterTable, Refusal};

/// Admit one request in every scope, or none. KEYS: one hash per scope
/// (`r` = request TAT, `t` = token TAT, µs). ARGV[1] = tokens, then per
/// scope: request interval, request period, token interval, token period
/// (µs; a period of 0 = no such limit). Returns `{refused?, now, scope,
/// what, retry_us, r1, t1, r2, t2, ...}`: the TATs as they now are (after a
/// refusal: as they were).
pub const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost = tonumber(ARGV[1])
local n = #KEYS
local cur_r, cur_t, new_r, new_t = {}, {}, {}, {}
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i], 'r', 't')
  cur_r[i] = tonumber(v[1]) or 0
  cur_t[i] = tonumber(v[2]) or 0
end
local function refuse(i, what, retry)
  local out = {1, now, i, what, retry}
  for j = 1, n do out[#out + 1] = cur_r[j]; out[#out + 1] = cur_t[j] end
  return out
end
for i = 1, n do
  local b = 1 + (i - 1) * 4
  local ri, rp = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local ti, tp = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  new_r[i], new_t[i] = cur_r[i], cur_t[i]
  if rp > 0 then
    local tat = math.max(cur_r[i], now) + ri
    if tat - now > rp then return refuse(i, 1, tat - now - rp) end
    new_r[i] = tat
  end
  if tp > 0 then
    local inc = cost * ti
    if inc > tp then return refuse(i, 2, -1) end
    local tat = math.max(cur_t[i], now) + inc
    if tat - now > tp then return refuse(i, 2, tat - now - tp) end
    new_t[i] = tat
  end
end
local out = {0, now, 0, 0, 0}
for i = 1, n do
  redis.call('HSET', KEYS[i], 'r', new_r[i], 't', new_t[i])
  local ahead = math.max(new_r[i], new_t[i]) - now
  redis.call('PEXPIRE', KEYS[i], math.floor(ahead / 1000) + 1000)
  out[#out + 1] = new_r[i]; out[#out + 1] = new_t[i]
end
return out
"#;

/// Move token TATs by a signed number of µs each (the estimate replaced by
/// the real count); a scope whose key expired meanwhile is left alone.
pub const CORRECT: &str = r#"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 't', ARGV[i])
  end
end
return 0
"#;

/// Per scope, what the script needs.
#[derive(Debug, Clone)]
struct ScopeArgs {
    key: String,
    req: (u64, u64),
    tok: (u64, u64),
}

/// The shared backend: Redis decides, the in-process table remembers.
pub struct RedisLimiter {
    table: Arc<LimiterTable>,
    link: Arc<Link>,
    writer: Writer,
    prefix: Arc<str>,
    admit: Arc<Script>,
}

fn us_args(rate: Option<crate::rate_limiter::gcra::Rate>) -> (u64, u64) {
    match rate {
        Some(r) => {
            let period = r.period_ns() / 1000;
            ((period / r.amount.max(1)).max(1), period)
        }
        None => (0, 0),
    }
}

impl RedisLimiter {
    pub fn new(table: Arc<LimiterTable>, link: Arc<Link>, writer: Writer, prefix: &str) -> RedisLimiter {
        RedisLimiter { table, link, writer, prefix: prefix.into(), admit: Arc::new(Script::new(ADMIT)) }
    }

    /// What the script needs of each of `scopes`, in their order, read
    /// from the table now: scopes are defined and changed at runtime
    /// (reloads, the admin API), and this path already pays a round trip.
    fn args(&self, scopes: &[usize]) -> Vec<ScopeArgs> {
        scopes
            .iter()
            .map(|&i| match self.table.spec(i) {
                Some(s) => ScopeArgs {
                    key: format!("{}:rl:{}", self.prefix, s.name),
                    req: us_args(s.requests),
                    tok: us_args(s.tokens),
                },
                None => ScopeArgs { key: String::new(), req: (0, 0), tok: (0, 0) },
            })
            .collect()
    }

    /// Decide in process (Redis unusable for this request).
    fn local(&self, scopes: &[usize], tokens: u64) -> Result<bool, Refusal> {
        self.link.fell_back();
        self.table.admit_scopes(scopes, tokens)
    }
}

/// Copy the TATs Redis returned into the table (see the module doc).
/// `args[j]` belongs to `scopes[j]`.
fn mirror(table: &LimiterTable, args: &[ScopeArgs], scopes: &[usize], sent_ns: u64, now_us: i64, tats: &[i64]) {
    let to_local = |tat_us: i64| -> u64 {
        if tat_us <= 0 {
            return 0;
        }
        let ahead_ns = (tat_us - now_us).saturating_mul(1000);
        if ahead_ns >= 0 {
            sent_ns.saturating_add(ahead_ns as u64)
        } else {
            sent_ns.saturating_sub(ahead_ns.unsigned_abs())
        }
    };
    for (j, &i) in scopes.iter().enumerate() {
        let (Some(r), Some(t), Some(a)) = (tats.get(2 * j), tats.get(2 * j + 1), args.get(j)) else {
            continue;
        };
        let r = (a.req.1 > 0).then(|| to_local(*r));
        let t = (a.tok.1 > 0).then(|| to_local(*t));
        table.mirror(i, r, t);
    }
}

/// The script's answer turned into a decision (and the TATs copied).
fn decide(
    table: &LimiterTable,
    args: &[ScopeArgs],
    scopes: &[usize],
    sent_ns: u64,
    reply: &[i64],
) -> Result<(), Refusal> {
    let (Some(&refused), Some(&now), Some(&at), Some(&what), Some(&retry)) =
        (reply.first(), reply.get(1), reply.get(2), reply.get(3), reply.get(4))
    else {
        // Not the shape the script returns: admit, as without Redis.
        return Ok(());
    };
    mirror(table, args, scopes, sent_ns, now, reply.get(5..).unwrap_or(&[]));
    if refused == 0 {
        return Ok(());
    }
    let i = usize::try_from(at - 1).ok().and_then(|j| scopes.get(j).copied()).unwrap_or(0);
    let what = if what == 1 { Exceeded::Requests } else { Exceeded::Tokens };
    let retry = u64::try_from(retry).ok().map(std::time::Duration::from_micros);
    Err(table.refusal(i, what, retry))
}

impl LimiterBackend for RedisLimiter {
    fn admit_now(&self, scopes: &[usize], tokens: u64) -> Option<Result<bool, Refusal>> {
        if !self.table.has_rates(scopes) {
            // Concurrency only: per replica, no Redis.
            return Some(self.table.admit_scopes(scopes, tokens));
        }
        if !self.link.is_up() {
            return Some(self.local(scopes, tokens));
        }
        // The fast refusal: the copy of Redis's TATs already says no.
        if let Err(r) = self.table.precheck(scopes, tokens) {
            return Some(Err(r));
        }
        None
    }

    fn admit_later(&self, scopes: Vec<usize>, tokens: u64) -> AdmitFuture {
        // Concurrency slots are taken before the call, and held by a guard
        // until the decision: a request dropped while Redis answers (its
        // client left) gives them back instead of leaking them for good.
        let slots = match self.table.take_slots(&scopes) {
            Ok(held) => SlotGuard { table: self.table.clone(), scopes: scopes.clone(), held },
            Err(r) => return Box::pin(async move { Err(r) }),
        };
        let (table, link, script) = (self.table.clone(), self.link.clone(), self.admit.clone());
        let args: Arc<[ScopeArgs]> = self.args(&scopes).into();
        let sent_ns = table.now_ns();
        Box::pin(async move {
            let a = args.clone();
            let reply: Result<Vec<i64>, _> = link
                .call(|mut c| async move {
                    let mut inv = script.prepare_invoke();
                    inv.arg(tokens);
                    for a in a.iter() {
                        inv.key(a.key.as_str()).arg(a.req.0).arg(a.req.1).arg(a.tok.0).arg(a.tok.1);
                    }
                    inv.invoke_async(&mut c).await
                })
                .await;
            let decided = match reply {
                Ok(reply) => decide(&table, &args, &scopes, sent_ns, &reply),
                Err(_) => {
                    // Redis failed this request: decide it in process.
                    drop(slots);
                    link.fell_back();
                    return table.admit_scopes(&scopes, tokens);
                }
            };
            // Admitted: the grant holds the slots from here; refused: the
            // guard gives them back.
            decided.map(|()| slots.keep())
        })
    }

    fn release(&self, scopes: &[usize]) {
        self.table.release_scopes(scopes);
    }

    fn correct(&self, scopes: &[usize], estimated: u64, actual: u64) {
        self.table.correct_scopes(scopes, estimated, actual);
        if !self.link.is_up() {
            return;
        }
        let mut keys = Vec::new();
        let mut deltas = Vec::new();
        for a in self.args(scopes) {
            if a.tok.1 == 0 {
                continue;
            }
            let d = (i128::from(actual) - i128::from(estimated)) * i128::from(a.tok.0);
            keys.push(a.key);
            deltas.push(d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64);
        }
        if !keys.is_empty() {
            self.writer.send(Job::Correct { keys, deltas_us: deltas });
        }
    }

    fn headroom(&self, scopes: &[usize]) -> Headroom {
        self.table.headroom_of(scopes)
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

/// Concurrency slots taken for a request whose decision is still on its way.
struct SlotGuard {
    table: Arc<LimiterTable>,
    scopes: Vec<usize>,
    held: bool,
}

impl SlotGuard {
    /// Hand the slots over to the grant; whether any are held.
    fn keep(mut self) -> bool {
        std::mem::replace(&mut self.held, false)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if self.held {
            self.table.release_scopes(&self.scopes);
        }
    }
}
