//! The mock's own routes under `/mock/` (stats, reset, fault dice, gates):
//! what tests read and steer it by. They are not counted or recorded.

use bytes::Bytes;
use http::{Method, Response, StatusCode};

use super::body::MockBody;
use super::hostile::Hostile;
use super::server::{ServerState, error, json};

/// The `/mock/...` inspection routes; they are not counted or recorded.
pub(super) fn inspect(state: &ServerState, method: &Method, rest: &str, query: Option<&str>) -> Response<MockBody> {
    let gate = rest.strip_prefix("gates/").filter(|g| !g.is_empty());
    match (method, rest, gate) {
        // `POST /mock/faults?fail_rate=0.3&faults=500,429`: change the dice;
        // `?hostile=drip` (or `hostile=` to stop): a hostile answer to every request.
        (&Method::POST, "faults", _) => {
            let mut rate = 0.0;
            let mut faults = Vec::new();
            let mut hostile: Option<Option<Hostile>> = None;
            for pair in query.unwrap_or("").split('&') {
                match pair.split_once('=') {
                    Some(("fail_rate", v)) => rate = v.parse().unwrap_or(0.0),
                    Some(("faults", v)) => faults = v.split(',').filter_map(|f| f.parse().ok()).collect(),
                    Some(("hostile", "")) => hostile = Some(None),
                    Some(("hostile", v)) => match v.parse::<Hostile>() {
                        Ok(h) => hostile = Some(Some(h)),
                        Err(e) => return error(StatusCode::BAD_REQUEST, &e, "invalid_request_error", None),
                    },
                    _ => {}
                }
            }
            if let Some(h) = hostile {
                if let Ok(mut slot) = state.hostile.write() {
                    *slot = h;
                }
                let shown = h.map_or("null".to_string(), |h| format!("\"{h}\""));
                return json(StatusCode::OK, Bytes::from(format!("{{\"hostile\":{shown}}}")));
            }
            state.dice.set(rate, faults);
            json(StatusCode::OK, Bytes::from(format!("{{\"fail_rate\":{rate}}}")))
        }
        (&Method::GET, "stats", _) => match sonic_rs::to_vec(&state.stats.snapshot()) {
            Ok(v) => json(StatusCode::OK, Bytes::from(v)),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), "server_error", None),
        },
        (&Method::POST, "reset", _) => {
            state.stats.reset();
            json(StatusCode::OK, Bytes::from_static(b"{\"reset\":true}"))
        }
        (&Method::POST, _, Some(g)) if g.ends_with("/release") => {
            let name = g.trim_end_matches("/release");
            state.gates.release(name);
            json(StatusCode::OK, Bytes::from_static(b"{\"released\":1}"))
        }
        (&Method::GET, _, Some(name)) if !name.contains('/') => {
            let body = format!("{{\"sent\":{}}}", state.gates.sent(name));
            json(StatusCode::OK, Bytes::from(body))
        }
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("Unknown mock route: {method} /mock/{rest}"),
            "invalid_request_error",
            Some("unknown_url"),
        ),
    }
}
