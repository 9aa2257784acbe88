//! `GET /dashboard`: one live HTML page (no external asset: its CSS and
//! script are inline) and `GET /dashboard/data`, the JSON it reads besides
//! `/status`.
//!
//! How the admin key is given: a browser cannot set a header on a page
//! load, so the page itself holds no data and needs no key. It asks for the
//! key in a form, keeps it in `sessionStorage` (gone when the tab closes;
//! never in a URL, never in a cookie, so no other site's request can carry
//! it), and sends it as `Authorization: Bearer` on each `fetch` of
//! `/status` and `/dashboard/data`, which refuse without it (401). The
//! page's Content-Security-Policy allows only its own inline script and
//! style (by hash) and requests to this origin, and no framing.

use std::sync::OnceLock;

use actix_web::{HttpRequest, HttpResponse, ResponseError};
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::auth;
use crate::error::GatewayError;
use crate::gateway::WorkerState;
use crate::series::{Second, Summary};

const PAGE: &str = include_str!("dashboard.html");

/// The page, and its Content-Security-Policy with the hashes of its inline
/// script and style (computed once: the page is a constant).
fn page() -> &'static (String, String) {
    static PAGE_AND_CSP: OnceLock<(String, String)> = OnceLock::new();
    PAGE_AND_CSP.get_or_init(|| {
        let hash = |open: &str, close: &str| {
            let body = PAGE.split_once(open).and_then(|(_, rest)| rest.split_once(close)).map_or("", |(b, _)| b);
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body.as_bytes()))
        };
        let csp = format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; \
             img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
            hash("<script>", "</script>"),
            hash("<style>", "</style>")
        );
        (PAGE.to_string(), csp)
    })
}

pub async fn dashboard() -> HttpResponse {
    let (body, csp) = page();
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("content-security-policy", csp.as_str()))
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("referrer-policy", "no-referrer"))
        .insert_header(("cache-control", "no-store"))
        .body(body.as_str())
}

#[derive(Serialize)]
struct DashboardData {
    version: &'static str,
    uptime_s: u64,
    /// Whether `/status` and this route need a key (`server.admin_key`).
    admin_key_required: bool,
    last_minute: Summary,
    /// The last minutes, second by second, oldest first.
    seconds: Vec<Second>,
}

pub async fn data(state: WorkerState, req: HttpRequest) -> HttpResponse {
    let gw = &state.gateway;
    if let Some(d) = &gw.admin_digest
        && !auth::is_admin(d, req.headers())
    {
        return GatewayError::AdminKeyRequired.error_response();
    }
    let series = &gw.upstreams.metrics.series;
    let body = DashboardData {
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: gw.started.elapsed().as_secs(),
        admin_key_required: gw.admin_digest.is_some(),
        last_minute: series.summary(60),
        seconds: series.seconds(),
    };
    match sonic_rs::to_string(&body) {
        Ok(s) => {
            HttpResponse::Ok().content_type("application/json").insert_header(("cache-control", "no-store")).body(s)
        }
        Err(e) => GatewayError::Internal { detail: e.to_string() }.error_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_has_one_script_and_one_style_and_loads_nothing_else() {
        let p = super::PAGE;
        assert_eq!(p.matches("<script>").count(), 1);
        assert_eq!(p.matches("<style>").count(), 1);
        assert!(!p.contains("src=") && !p.contains("href=\"http") && !p.contains("@import"), "no external asset");
        let csp = &super::page().1;
        assert!(csp.contains("script-src 'sha256-") && !csp.contains("unsafe-inline"), "{csp}");
    }
}
