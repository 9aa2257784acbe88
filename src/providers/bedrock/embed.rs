//! `/v1/embeddings` on Bedrock: InvokeModel in Titan's or Cohere's own body
//! (`translate::bedrock::embed`), each call signed and sent as every other
//! Bedrock call (one re-sign with new credentials on a 403).
//!
//! Titan embeds one text per call, so n inputs are n calls; Cohere takes
//! 96 a call. The calls of one request run concurrently, at most
//! [`CONCURRENCY`] at a time (each also takes one of the provider's
//! in-flight slots, so a large batch cannot crowd out other requests
//! beyond the provider's `max_inflight`), and the vectors come back in
//! input order. The first failed call fails the whole request with its
//! error (so a 429 still cools the deployment down and is retried by the
//! attempt loop); the calls still running are dropped with it, and no
//! partial list ever reaches the client. The whole request is bounded by
//! the total timeout, not each call.

use std::future::Future;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use sluice_upstream::UpstreamClient;

use super::{Bedrock, read};
use crate::cloud::aws::sign::BedrockAction;
use crate::error::{GatewayError, TimeoutPhase};
use crate::providers::{Call, Provider, Reply, transport, unsupported};
use crate::translate::bedrock::embed::{self, Family};

/// InvokeModel calls in flight at once for one embeddings request.
pub const CONCURRENCY: usize = 8;

impl Bedrock {
    pub(super) async fn embed(
        &self,
        p: &Provider,
        call: &Call<'_>,
        client: &UpstreamClient,
    ) -> Result<Reply, GatewayError> {
        let model = call.upstream_model;
        let Some(family) = Family::of(model) else {
            return Err(unsupported(p, call));
        };
        let plan = embed::request(call.body, family)?;
        let uri = self.uri(p, model, BedrockAction::Invoke)?;
        let calls = plan.calls.into_iter().map(|inv| {
            let uri = &uri;
            async move {
                let resp = self.post(p, call, client, uri, Bytes::from(inv.body), false).await?;
                let bytes = read(p, resp).await?;
                embed::answer(family, &bytes, inv.inputs).map_err(|e| GatewayError::UpstreamProtocol {
                    provider: p.name.clone(),
                    detail: format!("invalid InvokeModel embeddings answer ({e})"),
                })
            }
        });
        let answers = tokio::time::timeout(call.timeouts.total, all_bounded(calls, CONCURRENCY))
            .await
            .map_err(|_| transport::timeout(p, &call.timeouts, TimeoutPhase::Total))??;
        // Titan reports each text's tokens; Bedrock's Cohere answers carry
        // none in the body (AWS puts the count in a response header), so
        // those inputs are counted here with the gateway's tokenizer.
        let tokens = match answers.iter().map(|a| a.tokens).sum::<Option<u64>>() {
            Some(n) => n,
            None => crate::tokens::count(plan.texts.join("\n")).await,
        };
        let (body, usage) = embed::response(answers, model, plan.encoding, tokens);
        Ok(Reply::Complete { body: Bytes::from(body), usage: Some(usage.into()) })
    }
}

/// Runs `futs` at most `limit` at a time; their results in the order
/// given, or the first error (the others are dropped, cancelling them).
async fn all_bounded<T, E, F>(futs: impl IntoIterator<Item = F>, limit: usize) -> Result<Vec<T>, E>
where
    F: Future<Output = Result<T, E>>,
{
    stream::iter(futs).buffered(limit.max(1)).try_collect().await
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    use super::*;

    #[derive(Default)]
    struct Seen {
        started: Cell<usize>,
        running: Cell<usize>,
        max: Cell<usize>,
    }

    async fn job(seen: Rc<Seen>, i: usize, fail_at: Option<usize>) -> Result<usize, String> {
        seen.started.set(seen.started.get() + 1);
        seen.running.set(seen.running.get() + 1);
        seen.max.set(seen.max.get().max(seen.running.get()));
        // Later jobs finish first: the order of results must not follow.
        tokio::time::sleep(Duration::from_millis(100 - i as u64)).await;
        seen.running.set(seen.running.get() - 1);
        if fail_at == Some(i) { Err(format!("job {i} failed")) } else { Ok(i * 10) }
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_limit_at_once_results_in_order() {
        let seen = Rc::new(Seen::default());
        let out = all_bounded((0..20).map(|i| job(seen.clone(), i, None)), CONCURRENCY).await.unwrap();
        assert_eq!(out, (0..20).map(|i| i * 10).collect::<Vec<_>>());
        assert_eq!(seen.max.get(), CONCURRENCY);
        assert_eq!(seen.started.get(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_error_fails_all_and_stops_the_rest() {
        let seen = Rc::new(Seen::default());
        let out = all_bounded((0..20).map(|i| job(seen.clone(), i, Some(2))), 4).await;
        assert_eq!(out, Err("job 2 failed".to_owned()));
        // Jobs past the window when 2 failed were never started.
        assert!(seen.started.get() < 20, "{}", seen.started.get());
        // The ones in flight were dropped, not left running.
        drop(out);
        assert!(seen.running.get() <= 4);
    }
}
