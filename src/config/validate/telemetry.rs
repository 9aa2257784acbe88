//! `[telemetry]`: the OTLP collector, `[telemetry.traces]` and
//! `[telemetry.request_log]`.

use std::path::PathBuf;

use super::super::locate::join_key;
use super::super::raw::{RawRequestLog, RawTelemetry, RawTraces, defaults};
use super::super::{LogTarget, OtlpConfig, RequestLogConfig, TelemetryConfig, TracesConfig};
use super::{Checker, providers};

/// A queue longer than this is a typo (and memory nobody meant to spend).
const MAX_QUEUE: i64 = 1_000_000;
/// A file smaller than a few lines would rotate on every request: a typo.
const MIN_LOG_BYTES: i64 = 4096;

pub(super) fn settings(c: &mut Checker, raw: Option<RawTelemetry>) -> TelemetryConfig {
    let Some(raw) = raw else { return TelemetryConfig::default() };
    let key = |k: &str| join_key("telemetry", k);
    let otlp = raw.otlp_endpoint.as_ref().map(|url| {
        let endpoint = providers::base_url(c, &key("otlp_endpoint"), url);
        let headers = providers::headers(c, &key("otlp_headers"), raw.otlp_headers.clone().unwrap_or_default());
        let service_name =
            raw.service_name.clone().map_or_else(|| defaults::OTLP_SERVICE_NAME.to_string(), |t| t.value);
        if service_name.is_empty() {
            c.err(key("service_name"), "must not be empty (it names this gateway in the trace backend)");
        }
        let int = |c: &mut Checker, k: &str, v, d, min, max, why| c.int(&key(k), v, d, min, max, why).unsigned_abs();
        OtlpConfig {
            endpoint,
            headers,
            service_name,
            timeout_ms: int(c, "export_timeout_ms", raw.export_timeout_ms, defaults::OTLP_TIMEOUT_MS, 1, 120_000, ""),
            export_interval_ms: int(
                c,
                "export_interval_ms",
                raw.export_interval_ms,
                defaults::OTLP_EXPORT_INTERVAL_MS,
                10,
                60_000,
                "(longest a finished span waits before it is sent)",
            ),
            batch_size: usize::try_from(int(
                c,
                "batch_size",
                raw.batch_size,
                defaults::OTLP_BATCH_SIZE,
                1,
                65_536,
                "(records per export request)",
            ))
            .unwrap_or(1),
            queue_size: usize::try_from(int(
                c,
                "queue_size",
                raw.queue_size,
                defaults::OTLP_QUEUE_SIZE,
                1,
                MAX_QUEUE,
                "(finished requests waiting for export)",
            ))
            .unwrap_or(1),
        }
    });
    if otlp.is_none() {
        for (set, k) in [
            (raw.otlp_headers.is_some(), "otlp_headers"),
            (raw.service_name.is_some(), "service_name"),
            (raw.export_timeout_ms.is_some(), "export_timeout_ms"),
            (raw.export_interval_ms.is_some(), "export_interval_ms"),
            (raw.batch_size.is_some(), "batch_size"),
            (raw.queue_size.is_some(), "queue_size"),
        ] {
            if set {
                c.err(key(k), "has no effect without telemetry.otlp_endpoint; set the collector's URL or remove it");
            }
        }
    }
    let traces = raw.traces.map(|t| traces(c, t));
    if traces.is_some() && otlp.is_none() {
        c.err(
            "telemetry.traces",
            "traces need telemetry.otlp_endpoint, the OTLP/HTTP collector to send them to \
             (e.g. otlp_endpoint = \"http://otel-collector:4318\")",
        );
    }
    let request_log = raw.request_log.map(|l| request_log(c, l));
    if request_log.as_ref().is_some_and(|l| l.otlp) && otlp.is_none() {
        c.err(
            "telemetry.request_log.otlp",
            "needs telemetry.otlp_endpoint, the OTLP/HTTP collector to send log records to",
        );
    }
    TelemetryConfig { otlp, traces, request_log }
}

fn traces(c: &mut Checker, t: RawTraces) -> TracesConfig {
    let sample_ratio = t.sample_ratio.unwrap_or(defaults::TRACE_SAMPLE_RATIO);
    if !(0.0..=1.0).contains(&sample_ratio) {
        c.err(
            "telemetry.traces.sample_ratio",
            format!("must be between 0 and 1 (the share of new traces recorded), found {sample_ratio}"),
        );
    }
    TracesConfig {
        sample_ratio: sample_ratio.clamp(0.0, 1.0),
        record_content: t.record_content.unwrap_or(false),
        max_content_bytes: usize::try_from(c.int(
            "telemetry.traces.max_content_bytes",
            t.max_content_bytes,
            defaults::TRACE_MAX_CONTENT_BYTES,
            1,
            16 << 20,
            "",
        ))
        .unwrap_or(1),
    }
}

fn request_log(c: &mut Checker, l: RawRequestLog) -> RequestLogConfig {
    let key = |k: &str| join_key("telemetry.request_log", k);
    let target = match l.path {
        None => {
            c.err(
                "telemetry.request_log",
                "needs path: a file such as \"/var/log/sluice/requests.jsonl\", or \"-\" for standard output",
            );
            LogTarget::Stdout
        }
        Some(t) if t.value == "-" => LogTarget::Stdout,
        Some(t) if t.value.is_empty() => {
            c.err(key("path"), "is empty; write a file path, or \"-\" for standard output");
            LogTarget::Stdout
        }
        Some(t) => LogTarget::File(PathBuf::from(t.value)),
    };
    let max_bytes =
        c.int(&key("max_bytes"), l.max_bytes, defaults::LOG_MAX_BYTES, MIN_LOG_BYTES, i64::MAX, "(rotate beyond it)");
    let max_files = c.int(&key("max_files"), l.max_files, defaults::LOG_MAX_FILES, 1, 1000, "(rotated files kept)");
    let queue_size = c.int(
        &key("queue_size"),
        l.queue_size,
        defaults::LOG_QUEUE_SIZE,
        1,
        MAX_QUEUE,
        "(lines waiting to be written)",
    );
    RequestLogConfig {
        target,
        max_bytes: max_bytes.unsigned_abs(),
        max_files: u32::try_from(max_files).unwrap_or(1),
        queue_size: usize::try_from(queue_size).unwrap_or(1),
        otlp: l.otlp.unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::interpolate::Env;
    use crate::config::{Config, LogTarget};

    struct OneEnv;
    impl Env for OneEnv {
        fn get(&self, name: &str) -> Option<String> {
            (name == "OTLP_TOKEN").then(|| "s3cret-token".to_string())
        }
    }

    const BASE: &str = "[server]\nallow_anonymous = true\n[[providers]]\nname = \"mock\"\nkind = \"mock\"\n\
                        [[models]]\nname = \"m\"\ndeployments = [{ provider = \"mock\", model = \"m\" }]\n";

    fn load(extra: &str) -> Result<Config, String> {
        Config::from_str_with_env(&format!("{BASE}{extra}"), "t.toml", &OneEnv).map_err(|e| e.to_string())
    }

    #[test]
    fn off_unless_written_and_defaults_when_on() {
        let t = load("").unwrap().telemetry;
        assert!(t.otlp.is_none() && t.traces.is_none() && t.request_log.is_none());
        let c = load(
            "[telemetry]\notlp_endpoint = \"http://collector:4318/\"\notlp_headers = { \"X-Token\" = \"${OTLP_TOKEN}\" }\n\
             [telemetry.traces]\n[telemetry.request_log]\npath = \"-\"\n",
        )
        .unwrap()
        .telemetry;
        let o = c.otlp.unwrap();
        assert_eq!(o.endpoint, "http://collector:4318", "trailing slash removed");
        assert_eq!((o.headers[0].0.as_str(), o.headers[0].1.expose()), ("x-token", "s3cret-token"));
        assert_eq!((o.service_name.as_str(), o.export_interval_ms, o.queue_size), ("sluice", 1000, 4096));
        let t = c.traces.unwrap();
        assert_eq!((t.sample_ratio, t.record_content), (1.0, false));
        let l = c.request_log.unwrap();
        assert_eq!((l.target, l.max_files, l.otlp), (LogTarget::Stdout, 5, false));
    }

    #[test]
    fn errors_say_what_is_missing_and_never_print_secrets() {
        let e = load("[telemetry.traces]\nsample_ratio = 1.5\n").unwrap_err();
        assert!(e.contains("telemetry.traces: traces need telemetry.otlp_endpoint"), "{e}");
        assert!(e.contains("sample_ratio: must be between 0 and 1"), "{e}");
        let e = load("[telemetry]\nservice_name = \"x\"\n[telemetry.request_log]\notlp = true\n").unwrap_err();
        assert!(e.contains("telemetry.service_name: has no effect without telemetry.otlp_endpoint"), "{e}");
        assert!(e.contains("telemetry.request_log: needs path"), "{e}");
        assert!(e.contains("telemetry.request_log.otlp: needs telemetry.otlp_endpoint"), "{e}");
        let e =
            load("[telemetry]\notlp_endpoint = \"collector:4318\"\notlp_headers = { \"a b\" = \"${OTLP_TOKEN}\" }\n")
                .unwrap_err();
        assert!(e.contains("must start with http:// or https://"), "{e}");
        assert!(e.contains("not a valid HTTP header name"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let e = load("[telemetry.request_log]\npath = \"x\"\nmax_bytes = 10\nrotate = true\n").unwrap_err();
        assert!(e.contains("max_bytes: must be at least 4096"), "{e}");
        assert!(e.contains("unknown key `rotate`"), "{e}");
    }
}
