//! Where a request's end meets its charge's settling.
//!
//! The request log line and the trace carry the tokens and cost a request
//! was charged. For most requests the charge settles as the request ends;
//! but a stream's charge is settled by its [`crate::upstream::UpstreamStream`]
//! (after the last event, or after the tokens of a departed client were
//! counted) and a single-flight leader's by the shared call — before or
//! after the relay records the end. A `Meeting` takes the two in whichever
//! order they come and hands the line to the queues once both are in. If
//! one never comes (a charge dropped with nothing to settle), the line goes
//! out when the last holder drops it, with what the end knew.

use std::cell::RefCell;
use std::rc::Rc;

use super::{End, RequestObs};
use crate::usage::Usage;

/// What a charge settled with: the tokens, and their cost when priced.
pub type Settled = Option<(Usage, Option<f64>)>;

#[derive(Clone, Default)]
pub struct Meeting(Rc<RefCell<Parts>>);

#[derive(Default)]
struct Parts {
    end: Option<(Rc<RequestObs>, End)>,
    settled: Option<Settled>,
}

impl Meeting {
    /// The request ended (`end` as the record saw it).
    pub fn ended(&self, obs: Rc<RequestObs>, end: End) {
        let settled = {
            let mut p = self.0.borrow_mut();
            match p.settled.take() {
                Some(s) => s,
                None => {
                    p.end = Some((obs, end));
                    return;
                }
            }
        };
        emit(&obs, end, settled);
    }

    /// The request's charge settled: with tokens, or (`None`) with none
    /// known beyond what the end says.
    pub fn settled(&self, settled: Settled) {
        let ended = {
            let mut p = self.0.borrow_mut();
            match p.end.take() {
                Some(e) => e,
                None => {
                    p.settled = Some(settled);
                    return;
                }
            }
        };
        emit(&ended.0, ended.1, settled);
    }
}

fn emit(obs: &RequestObs, mut end: End, settled: Settled) {
    if let Some((usage, cost)) = settled {
        end.usage = Some(usage);
        end.cost_usd = cost;
    }
    obs.finish(end);
}

impl Drop for Parts {
    fn drop(&mut self) {
        if let Some((obs, end)) = self.end.take() {
            obs.finish(end);
        }
    }
}
