//! Spend per key and model, with each key's daily and monthly budget.
//!
//! Counted in nano-dollars (u64: up to 18 billion USD) so cheap requests do
//! not round to zero. The request path adds a finished request's cost
//! directly (an atomic add, so the very next request sees it — a budget
//! stops a key at the right request); the `RateLimiter` actor persists the
//! same records and loads them back at start.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use serde::Serialize;

pub const NANOS_PER_USD: f64 = 1e9;

/// Days since 1970-01-01 (UTC).
pub fn day_of(unix_secs: u64) -> u32 {
    (unix_secs / 86_400) as u32
}

/// Months since 1970-01 (UTC) of a day number (Howard Hinnant's civil-from-days).
pub fn month_of(day: u32) -> u32 {
    let z = i64::from(day) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    ((y - 1970) * 12 + (m - 1)).max(0) as u32
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Today, as days since 1970-01-01 (UTC).
pub fn today() -> u32 {
    day_of(unix_now())
}

/// Whose spend is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendKey {
    /// A key's (or team's) slot, as [`SpendTable::define_key`] gave it.
    Configured(usize),
    /// The anonymous policy (no keys configured and `allow_anonymous`).
    Anonymous,
}

/// The name the anonymous policy's spend is kept under (store, `/status`,
/// metrics).
pub const ANONYMOUS: &str = "anonymous";

/// What a team's spend is stored under: `team:NAME` (keys are stored under
/// their bare name).
pub const TEAM_PREFIX: &str = "team:";

/// A period's running total: which day (or month) it is for, and the amount.
#[derive(Debug, Default)]
struct Period {
    id: AtomicU32,
    nanos: AtomicU64,
}

impl Period {
    fn get(&self, id: u32) -> u64 {
        if self.id.load(Ordering::Acquire) == id { self.nanos.load(Ordering::Acquire) } else { 0 }
    }

    fn add(&self, id: u32, n: u64) {
        // A new day/month starts from zero; the race between two requests
        // crossing midnight at once can lose one of their amounts from the
        // new period's count, never double it.
        if self.id.load(Ordering::Acquire) != id {
            self.nanos.store(0, Ordering::Release);
            self.id.store(id, Ordering::Release);
        }
        self.nanos.fetch_add(n, Ordering::AcqRel);
    }

    /// Raise to a total seen elsewhere (shared mode): never lowers the
    /// current period's count, and a newer period replaces an older one.
    fn raise(&self, id: u32, n: u64) {
        let cur = self.id.load(Ordering::Acquire);
        if cur == id {
            self.nanos.fetch_max(n, Ordering::AcqRel);
        } else if cur < id {
            self.set(id, n);
        }
    }

    fn set(&self, id: u32, n: u64) {
        self.id.store(id, Ordering::Release);
        self.nanos.store(n, Ordering::Release);
    }
}

/// No budget (budgets are kept as atomics so that a reload or the admin
/// API can change them in place).
const NO_BUDGET: u64 = u64::MAX;

#[derive(Debug)]
struct KeySpend {
    /// The name it is stored under: the key's, or `team:` + the team's.
    name: String,
    today: Period,
    month: Period,
    /// All-time spend per model slot; grown on first use of a slot.
    by_model: boxcar::Vec<AtomicU64>,
    daily_budget: AtomicU64,
    monthly_budget: AtomicU64,
    /// Removed from the config or the admin API: hidden from `/status`.
    retired: AtomicBool,
    /// The store's totals were loaded into it (periods), and for model
    /// slots below this count (see [`SpendTable::restore`]).
    restored: AtomicBool,
    restored_models: AtomicUsize,
}

impl KeySpend {
    fn new(name: String, b: &Budgets) -> KeySpend {
        let k = KeySpend {
            name,
            today: Period::default(),
            month: Period::default(),
            by_model: boxcar::Vec::new(),
            daily_budget: AtomicU64::new(NO_BUDGET),
            monthly_budget: AtomicU64::new(NO_BUDGET),
            retired: AtomicBool::new(false),
            restored: AtomicBool::new(false),
            restored_models: AtomicUsize::new(0),
        };
        k.set_budgets(b);
        k
    }

    fn set_budgets(&self, b: &Budgets) {
        self.daily_budget.store(b.daily_usd.map_or(NO_BUDGET, to_nanos), Ordering::Release);
        self.monthly_budget.store(b.monthly_usd.map_or(NO_BUDGET, to_nanos), Ordering::Release);
    }

    fn budget(cell: &AtomicU64) -> Option<u64> {
        Some(cell.load(Ordering::Acquire)).filter(|b| *b != NO_BUDGET)
    }

    /// The cell of model slot `m`, grown to it if needed.
    fn model_cell(&self, m: usize) -> &AtomicU64 {
        loop {
            if let Some(c) = self.by_model.get(m) {
                return c;
            }
            // Concurrent growers may push past `m`: extra zero cells are harmless.
            self.by_model.push(AtomicU64::new(0));
        }
    }

    fn model_nanos(&self, m: usize) -> u64 {
        self.by_model.get(m).map_or(0, |c| c.load(Ordering::Acquire))
    }
}

/// Which budget ran out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BudgetHit {
    Daily { budget_usd: f64 },
    Monthly { budget_usd: f64 },
}

/// One finished request's cost, to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRecord {
    pub key: usize,
    pub model: usize,
    pub day: u32,
    pub nanos: u64,
}

/// Spend of every key and team, per model. Append-only, like the limiter's
/// table: a slot is given once per name and never reused, so a request's
/// slot stays valid across reloads and admin changes
/// (docs/decisions/runtime-keys.md).
#[derive(Debug)]
pub struct SpendTable {
    keys: boxcar::Vec<KeySpend>,
    models: boxcar::Vec<String>,
    /// Stored name → slot, model name → slot; only the `define_*` calls take it.
    index: Mutex<(HashMap<String, usize>, HashMap<String, usize>)>,
    anonymous: usize,
}

/// One key's spend as `/status` shows it (`rate_limiter` → `spend[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeySpendDetail {
    pub key: String,
    pub today_usd: f64,
    pub month_usd: f64,
    pub daily_budget_usd: Option<f64>,
    pub monthly_budget_usd: Option<f64>,
    pub by_model: Vec<ModelSpendDetail>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSpendDetail {
    pub model: String,
    pub usd: f64,
}

/// A key's budgets in USD.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budgets {
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
}

fn to_nanos(usd: f64) -> u64 {
    (usd.max(0.0) * NANOS_PER_USD).round() as u64
}

impl SpendTable {
    /// The table of `keys` (slots `0..keys.len()`, in order) and `models`
    /// (slots in order); the anonymous policy's slot comes after the keys.
    pub fn new(keys: Vec<(String, Budgets)>, models: Vec<String>) -> SpendTable {
        let mut t =
            SpendTable { keys: boxcar::Vec::new(), models: boxcar::Vec::new(), index: Mutex::default(), anonymous: 0 };
        for (name, b) in keys {
            t.define_key(&name, &b);
        }
        t.anonymous = t.define_key(ANONYMOUS, &Budgets::default());
        for m in models {
            t.define_model(&m);
        }
        t
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<String, usize>, HashMap<String, usize>)> {
        self.index.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn define_stored(&self, stored: String, b: &Budgets) -> usize {
        let mut idx = self.lock();
        if let Some(&i) = idx.0.get(&stored)
            && let Some(k) = self.keys.get(i)
        {
            k.set_budgets(b);
            k.retired.store(false, Ordering::Release);
            return i;
        }
        let i = self.keys.push(KeySpend::new(stored.clone(), b));
        idx.0.insert(stored, i);
        i
    }

    /// The slot of key `name` with budgets `b` (its spend kept if it had one).
    pub fn define_key(&self, name: &str, b: &Budgets) -> usize {
        self.define_stored(name.to_string(), b)
    }

    /// The slot of team `name` (stored as `team:NAME`) with budgets `b`.
    pub fn define_team(&self, name: &str, b: &Budgets) -> usize {
        self.define_stored(format!("{TEAM_PREFIX}{name}"), b)
    }

    /// The slot of model `name`.
    pub fn define_model(&self, name: &str) -> usize {
        let mut idx = self.lock();
        if let Some(&i) = idx.1.get(name) {
            return i;
        }
        let i = self.models.push(name.to_string());
        idx.1.insert(name.to_string(), i);
        i
    }

    /// The slot stored under `name` (a key's name, or `team:NAME`), if any.
    pub fn find_key(&self, stored: &str) -> Option<usize> {
        self.lock().0.get(stored).copied()
    }

    pub fn find_model(&self, name: &str) -> Option<usize> {
        self.lock().1.get(name).copied()
    }

    /// Hide every slot not in `live` from `/status` (the anonymous one stays).
    pub fn retain_live(&self, live: &std::collections::HashSet<usize>) {
        for (i, k) in self.keys.iter() {
            k.retired.store(i != self.anonymous && !live.contains(&i), Ordering::Release);
        }
    }

    /// The slot `key` is counted in (the index records and the store use).
    pub fn slot(&self, key: SpendKey) -> usize {
        match key {
            SpendKey::Configured(i) => i,
            SpendKey::Anonymous => self.anonymous,
        }
    }

    /// Every slot's stored name, in slot order (retired ones included).
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(_, k)| k.name.as_str())
    }

    /// The stored name of slot `key`.
    pub fn key_name(&self, key: usize) -> Option<&str> {
        self.keys.get(key).map(|k| k.name.as_str())
    }

    pub fn key_count(&self) -> usize {
        self.keys.count()
    }

    pub fn model_name(&self, model: usize) -> Option<&str> {
        self.models.get(model).map(String::as_str)
    }

    pub fn model_count(&self) -> usize {
        self.models.count()
    }

    /// Has `key` spent its daily or monthly budget (as of `day`)?
    pub fn over_budget(&self, key: usize, day: u32) -> Option<BudgetHit> {
        let k = self.keys.get(key)?;
        if let Some(b) = KeySpend::budget(&k.daily_budget)
            && k.today.get(day) >= b
        {
            return Some(BudgetHit::Daily { budget_usd: b as f64 / NANOS_PER_USD });
        }
        if let Some(b) = KeySpend::budget(&k.monthly_budget)
            && k.month.get(month_of(day)) >= b
        {
            return Some(BudgetHit::Monthly { budget_usd: b as f64 / NANOS_PER_USD });
        }
        None
    }

    /// Has the key in `slot` spent its daily or monthly budget today?
    pub fn over_budget_now(&self, slot: usize) -> Option<BudgetHit> {
        // Without a budget there is nothing to check: no clock read.
        let k = self.keys.get(slot)?;
        if KeySpend::budget(&k.daily_budget).is_none() && KeySpend::budget(&k.monthly_budget).is_none() {
            return None;
        }
        self.over_budget(slot, today())
    }

    /// Count a finished request's cost; returns the record to persist.
    pub fn add(&self, key: usize, model: usize, usd: f64, day: u32) -> Option<SpendRecord> {
        let nanos = to_nanos(usd);
        if nanos == 0 || !usd.is_finite() {
            return None;
        }
        let k = self.keys.get(key)?;
        k.today.add(day, nanos);
        k.month.add(month_of(day), nanos);
        if self.models.get(model).is_some() {
            k.model_cell(model).fetch_add(nanos, Ordering::AcqRel);
        }
        Some(SpendRecord { key, model, day, nanos })
    }

    /// Restore totals loaded from the store (at start).
    pub fn restore(&self, key: usize, model: usize, total_nanos: u64, today: (u32, u64), month: (u32, u64)) {
        let Some(k) = self.keys.get(key) else { return };
        if total_nanos > 0 {
            k.model_cell(model).fetch_add(total_nanos, Ordering::AcqRel);
        }
        if today.1 > 0 && k.today.id.load(Ordering::Acquire) == today.0 {
            k.today.nanos.fetch_add(today.1, Ordering::AcqRel);
        } else if today.1 > 0 {
            k.today.set(today.0, today.1);
        }
        if month.1 > 0 && k.month.id.load(Ordering::Acquire) == month.0 {
            k.month.nanos.fetch_add(month.1, Ordering::AcqRel);
        } else if month.1 > 0 {
            k.month.set(month.0, month.1);
        }
    }

    /// What the store has not loaded yet, and mark it loaded: per slot,
    /// whether its periods are due, and the model slots due. Slots and
    /// models defined at runtime are loaded once, when first defined; a
    /// name seen before keeps its slot, so nothing is loaded twice.
    pub fn take_unrestored(&self) -> Vec<(usize, bool, std::ops::Range<usize>)> {
        let models = self.models.count();
        let mut out = Vec::new();
        for (i, k) in self.keys.iter() {
            let periods = !k.restored.swap(true, Ordering::AcqRel);
            let from = k.restored_models.swap(models, Ordering::AcqRel).min(models);
            if periods || from < models {
                out.push((i, periods, from..models));
            }
        }
        out
    }

    /// Take totals counted by every replica (shared mode: Redis's answer
    /// to a write, or another replica's news). Totals only rise here, so a
    /// late or repeated message cannot undo a newer one.
    pub fn observe(&self, key: usize, model: Option<usize>, day: u32, today: u64, month: u64, model_total: u64) {
        let Some(k) = self.keys.get(key) else { return };
        k.today.raise(day, today);
        k.month.raise(month_of(day), month);
        if let Some(m) = model.filter(|m| self.models.get(*m).is_some()) {
            k.model_cell(m).fetch_max(model_total, Ordering::AcqRel);
        }
    }

    /// Every (key, model) with spend, in USD.
    pub fn rows(&self) -> Vec<(&str, &str, f64)> {
        let mut out = Vec::new();
        for (_, k) in self.keys.iter() {
            for (mi, m) in self.models.iter() {
                let v = k.model_nanos(mi);
                if v > 0 {
                    out.push((k.name.as_str(), m.as_str(), v as f64 / NANOS_PER_USD));
                }
            }
        }
        out
    }

    pub fn key_total_usd(&self, key: usize) -> f64 {
        self.keys
            .get(key)
            .map_or(0.0, |k| k.by_model.iter().map(|(_, m)| m.load(Ordering::Acquire)).sum::<u64>() as f64)
            / NANOS_PER_USD
    }

    /// Today's and this month's spend of `key` as of `day`, in USD.
    pub fn periods_usd(&self, key: usize, day: u32) -> (f64, f64) {
        let Some(k) = self.keys.get(key) else { return (0.0, 0.0) };
        (k.today.get(day) as f64 / NANOS_PER_USD, k.month.get(month_of(day)) as f64 / NANOS_PER_USD)
    }

    /// `/status` detail: per live slot, today's and this month's spend
    /// against budgets, and all-time spend per model (a read).
    pub fn detail(&self, day: u32) -> Vec<KeySpendDetail> {
        let month = month_of(day);
        let usd = |n: u64| n as f64 / NANOS_PER_USD;
        // Keys and teams in the order they were defined, the anonymous
        // policy's slot last.
        let anonymous = self.keys.get(self.anonymous);
        self.keys
            .iter()
            .filter(|(i, _)| *i != self.anonymous)
            .map(|(_, k)| k)
            .chain(anonymous)
            .filter(|k| !k.retired.load(Ordering::Acquire))
            .map(|k| KeySpendDetail {
                key: k.name.clone(),
                today_usd: usd(k.today.get(day)),
                month_usd: usd(k.month.get(month)),
                daily_budget_usd: KeySpend::budget(&k.daily_budget).map(usd),
                monthly_budget_usd: KeySpend::budget(&k.monthly_budget).map(usd),
                by_model: self
                    .models
                    .iter()
                    .map(|(mi, m)| (k.model_nanos(mi), m))
                    .filter(|(n, _)| *n > 0)
                    .map(|(n, m)| ModelSpendDetail { model: m.clone(), usd: usd(n) })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
