//! Corrections to what scopes were charged at admission: the real token
//! count replaces the estimate, and an admission never used is given back.

use std::sync::atomic::Ordering;

use super::LimiterTable;

impl LimiterTable {
    /// Move each scope's token TAT by the difference between the estimate
    /// and the real count (a refund when the answer was shorter).
    pub fn correct_scopes(&self, scopes: &[usize], estimated: u64, actual: u64) {
        for &i in scopes {
            let Some(s) = self.scopes.get(i) else { continue };
            let spec = s.spec.load();
            let Some(rate) = &spec.tokens else { continue };
            let per = rate.interval_ns();
            if actual > estimated {
                s.tok_tat.fetch_add((actual - estimated).saturating_mul(per), Ordering::AcqRel);
            } else {
                let refund = (estimated - actual).saturating_mul(per);
                let _ = s.tok_tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(t.saturating_sub(refund)));
            }
        }
    }

    /// Give back one request in each scope's request rate (an admission
    /// that was never used).
    pub fn refund_request_scopes(&self, scopes: &[usize]) {
        for &i in scopes {
            let Some(s) = self.scopes.get(i) else { continue };
            let spec = s.spec.load();
            let Some(rate) = &spec.requests else { continue };
            let per = rate.interval_ns();
            let _ = s.req_tat.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(t.saturating_sub(per)));
        }
    }
}
