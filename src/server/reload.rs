//! Reload without restart: `SIGHUP` and `POST /admin/reload` run
//! [`Reloader::reload`] — read the file, load it with the loader `sluice
//! check` uses (every error with file:line), build a snapshot (what did
//! not change keeps its ids, hence its state), and swap it in. A refused
//! file changes nothing. Requests take their snapshot at their start, so
//! those in flight, streams included, finish on the config they began with.

use std::path::PathBuf;
use std::sync::Arc;

use super::build::Builder;
use crate::config::{Config, Env};
use crate::gateway::{Live, Loaded, ReloadAsk, ReloadOutcome};

/// Where the config is re-read from.
#[derive(Clone)]
pub struct ReloadSource {
    pub path: PathBuf,
    /// `${VAR}` values (the process environment, or a test's).
    pub env: Arc<dyn Env + Send + Sync>,
}

pub struct Reloader {
    pub source: Option<ReloadSource>,
    pub builder: Arc<Builder>,
    pub live: Arc<Live>,
}

/// Settings read only at start that differ between `old` and `new`.
fn restart_required(old: &Config, new: &Config) -> Vec<String> {
    let mut v = Vec::new();
    let mut check = |changed: bool, key: &str| {
        if changed {
            v.push(key.to_string());
        }
    };
    check(old.server.workers != new.server.workers, "server.workers");
    check(old.server.shutdown_timeout_ms != new.server.shutdown_timeout_ms, "server.shutdown_timeout_ms");
    check(old.server.busy_poll_us != new.server.busy_poll_us, "server.busy_poll_us");
    check(
        old.server.client_request_timeout_ms != new.server.client_request_timeout_ms,
        "server.client_request_timeout_ms",
    );
    check(
        old.server.client_disconnect_timeout_ms != new.server.client_disconnect_timeout_ms,
        "server.client_disconnect_timeout_ms",
    );
    check(old.server.keep_alive_ms != new.server.keep_alive_ms, "server.keep_alive_ms");
    check(old.server.fast_ingress != new.server.fast_ingress, "server.fast_ingress");
    check(old.shared != new.shared, "shared");
    check(old.spend_store != new.spend_store, "spend.store");
    check(old.breaker != new.breaker, "breaker");
    check(old.cache != new.cache, "cache");
    check(old.responses != new.responses, "responses");
    check(old.queue.max_size != new.queue.max_size, "queue.max_size");
    // The exporter's and the log writer's threads, queues and file.
    check(old.telemetry != new.telemetry, "telemetry");
    v
}

impl Reloader {
    /// Answer reload asks one at a time, for as long as the gateway runs.
    pub async fn serve(self, mut asks: tokio::sync::mpsc::Receiver<ReloadAsk>) {
        while let Some(reply) = asks.recv().await {
            let outcome = self.reload().await;
            let _ = reply.send(outcome);
        }
    }

    pub async fn reload(&self) -> ReloadOutcome {
        let outcome = self.try_reload().await;
        metrics::counter!(crate::metrics::CONFIG_RELOADS_TOTAL, "result" => outcome.label()).increment(1);
        match &outcome {
            ReloadOutcome::Ok { digest, restart_required } => tracing::info!(
                digest = digest.as_deref().unwrap_or(""),
                restart_required = %restart_required.join(", "),
                "config reloaded"
            ),
            ReloadOutcome::Invalid(errors) => {
                for e in errors {
                    tracing::error!("config reload refused: {e}");
                }
            }
            ReloadOutcome::Error(e) => tracing::error!(error = %e, "config reload failed; the running config stays"),
        }
        outcome
    }

    async fn try_reload(&self) -> ReloadOutcome {
        let Some(src) = &self.source else {
            return ReloadOutcome::Error(
                "this gateway was started without a config file (the embedded default): there is nothing to reload"
                    .into(),
            );
        };
        let mut config = match Config::load_with_env(&src.path, src.env.as_ref()) {
            Ok(c) => c,
            Err(errors) => return ReloadOutcome::Invalid(errors.0),
        };
        let digest = config.digest.clone().unwrap_or_default();
        let _building = self.live.build.lock().await;
        let current = self.live.load();
        // Bound at start: the listener stays where it is.
        config.server.listen = current.config.server.listen;
        let restart_required = restart_required(&current.config, &config);
        let accounts = self.live.accounts.snapshot();
        let loaded = Loaded { digest: Some(digest.clone()), at_unix: super::unix_now() };
        let built = match self.builder.build(Arc::new(config), loaded, &accounts).await {
            Ok(b) => b,
            Err(e) => return ReloadOutcome::Error(e),
        };
        built.publish(&self.live);
        ReloadOutcome::Ok { digest: Some(digest), restart_required }
    }
}
