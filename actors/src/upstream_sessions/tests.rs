//! The actor with real workers' pools on loopback: a worker that joins is
//! ordered to warm its pools, warms them on its own runtime, and reports;
//! a warm-up that fails is recorded as a connection error.

use std::time::Duration;

use sluice_upstream::{SessionSpec, WarmRequest};
use sonic_rs::{JsonContainerTrait, JsonValueTrait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::status::GetStatus;
use crate::supervision::ActorRegistry;

/// A server answering every request on a connection with an empty 200.
async fn server() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    actix::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            actix::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn spec(name: &str, port: u16) -> SessionSpec {
    let base = format!("http://127.0.0.1:{port}/v1/models");
    SessionSpec {
        name: name.into(),
        connect_timeout: Duration::from_secs(1),
        max_connections: 4,
        idle_timeout: Duration::from_secs(90),
        warm_connections: 2,
        warm_request: Some(WarmRequest { uri: base.parse().unwrap(), headers: vec![] }),
        plain_http: sluice_upstream::plain_http_target(&base.parse().unwrap()),
    }
}

#[actix_rt::test]
async fn a_joining_worker_warms_its_pools_on_the_actors_order() {
    let up = server().await;
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut registry = ActorRegistry::default();
    let specs = vec![Some(spec("up", up)), None, Some(spec("down", down))];
    let sessions = SessionsHandle::start(specs, &actix::Arbiter::current(), &mut registry).unwrap();
    let clients = sessions.join_worker();
    assert!(clients.get(0).is_some() && clients.get(1).is_none());

    // Wait for both reports to reach the actor.
    let status = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let s = sessions.addr().send(GetStatus).await.unwrap();
            let reported = |i: usize| s["workers"][0]["warm"][i]["state"].as_str() == Some("done");
            if reported(0) && reported(1) {
                return s;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("both warm-ups reported");
    let up_pool = &status["providers"][0]["pool"];
    assert_eq!(up_pool["connections_opened_total"].as_u64(), Some(2), "{status}");
    assert_eq!(up_pool["warm_ok"].as_u64(), Some(2), "{status}");
    // The refused provider's failure is in its error log.
    assert_eq!(status["providers"][1]["errors_total"].as_u64(), Some(1), "{status}");
    let recent = status["providers"][1]["recent_errors"].as_array().unwrap();
    assert!(recent[0]["message"].as_str().unwrap().starts_with("warm-up: "), "{status}");
    assert_eq!(recent[0]["kind"].as_str(), Some("connect"));
    // The registry shows this worker and each pool's warm-up.
    let warm = status["workers"][0]["warm"].as_array().unwrap();
    assert_eq!(warm.len(), 2, "{status}");
    assert_eq!((warm[0]["provider"].as_str(), warm[0]["opened"].as_u64()), (Some("up"), Some(2)));
    assert_eq!((warm[1]["provider"].as_str(), warm[1]["state"].as_str()), (Some("down"), Some("done")));
    assert!(warm[1]["error"].as_str().is_some());
    // The warm connections are this worker's: a request reuses one.
    let table = sessions.table();
    let client = clients.get(0).unwrap();
    let uri: http::Uri = format!("http://127.0.0.1:{up}/v1/models").parse().unwrap();
    let req =
        sluice_upstream::Outgoing { method: http::Method::GET, uri: &uri, headers: &[], body: Default::default() };
    let mut resp = client.send(req).await.unwrap();
    while resp.body.chunk().await.is_some() {}
    assert_eq!(table.get(0).unwrap().stats.opened_total(), 2);
}
