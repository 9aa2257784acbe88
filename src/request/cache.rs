//! The cache step of the pipeline: what `crate::cache::step` found, as the
//! client's reply, marked in `x-sluice-cache` and in the request's record.

use bytes::Bytes;

use super::ClientReply;
use super::record::Record;
use super::relay::FlightSpec;
use crate::cache::step::{self, FlightAnswer, Lookup};
use crate::cache::{BYPASS, HIT, MISS};
use crate::endpoint::Endpoint;
use crate::error::GatewayError;
use crate::gateway::WorkerState;
use crate::peek::Peek;

/// `None` when the model has caching off or the request bypasses it (the
/// pipeline then goes on as without a cache); otherwise the request's reply.
pub(super) async fn step(
    state: &WorkerState,
    req: super::Head<'_>,
    body: &Bytes,
    peek: &Peek,
    endpoint: Endpoint,
    model: usize,
    rec: &mut Record,
) -> Option<Result<ClientReply, GatewayError>> {
    let cache = &state.gateway.cache;
    let found = step::lookup(
        cache,
        &state.upstream,
        req,
        body,
        peek,
        endpoint,
        model,
        &rec.request_id,
        &mut rec.charge,
        rec.obs.as_ref(),
    )
    .await;
    let (stream, include_usage) = (peek.stream, peek.include_usage);
    match found {
        Lookup::Off => None,
        Lookup::Bypass => {
            rec.cache = Some(BYPASS);
            None
        }
        Lookup::Hit(answer) => {
            rec.cache = Some(HIT);
            // A hit costs no upstream tokens: the estimate is given back.
            rec.charge.release_estimate();
            Some(Ok(ClientReply::Stored { answer, stream, include_usage }))
        }
        Lookup::Miss(got) => {
            rec.cache = Some(MISS);
            // A follower's tokens are the leader's call's, charged to the
            // leader (whose charge the call took): it gives its estimate back.
            rec.charge.release_estimate();
            if let Some(d) = got.upstream {
                rec.add_upstream(d);
            }
            if let Some((m, d)) = got.served {
                rec.set_served(m, d);
            }
            let price = got.price;
            Some(got.answer.map(|answer| match answer {
                FlightAnswer::Assembled(answer) => ClientReply::Stored { answer, stream, include_usage },
                FlightAnswer::Complete { body, usage } => ClientReply::Complete { body, usage, price },
                FlightAnswer::Stream(sub) => ClientReply::Flight { sub, spec: FlightSpec { include_usage } },
            }))
        }
    }
}
