//! The REST API over real HTTP (reqwest) against a real relay, with real QUIC clients
//! in the session.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use signalbox_client::Event;
use signalbox_proto::{LeftReason, Role};

struct Api {
    relay: TestRelay,
    http: reqwest::Client,
    base: String,
    server_token: String,
}

impl Api {
    async fn start() -> Self {
        let relay = TestRelay::start_with(|c| c.http = Some("127.0.0.1:0".parse().unwrap())).await;
        let base = format!("http://{}", relay.handle.http_addr().expect("http is on"));
        let server_token = relay.server_token();
        Self {
            relay,
            http: reqwest::Client::new(),
            base,
            server_token,
        }
    }

    fn post(&self, path: &str, token: &str, body: Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

async fn error_of(r: reqwest::Response) -> (StatusCode, u64, String) {
    let status = r.status();
    let body: Value = r.json().await.expect("a JSON error body");
    (
        status,
        body["code"].as_u64().unwrap(),
        body["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn rest_signals_reach_clients_from_the_relay_in_order() {
    let api = Api::start().await;
    let (a, mut a_ev) = api.relay.join("a").await;
    let (_b, mut b_ev) = api.relay.join("b").await;
    let t = &api.server_token;

    let r = api
        .post(
            "/v1/sessions/test/signal",
            t,
            json!({"type": "notice", "data": "hello all"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for ev in [&mut a_ev, &mut b_ev] {
        let s = next_signal(ev).await;
        assert_eq!(
            (s.from, &*s.r#type, &*s.data, s.to_all),
            (None, "notice", "hello all", true)
        );
    }

    let path = format!("/v1/sessions/test/connections/{}/signal", a.me().id);
    for i in 0..30 {
        let r = api
            .post(&path, t, json!({"type": "n", "data": i.to_string()}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    let got: Vec<String> = signals(&mut a_ev, 30)
        .await
        .into_iter()
        .map(|s| {
            assert_eq!((s.from, s.to_all), (None, false));
            s.data.to_string()
        })
        .collect();
    assert_eq!(
        got,
        (0..30).map(|i| i.to_string()).collect::<Vec<_>>(),
        "in order among themselves"
    );
    no_signal(&mut b_ev, std::time::Duration::from_millis(200)).await;
}

#[tokio::test]
async fn each_error_has_its_code_and_a_json_body() {
    let api = Api::start().await;
    let (a, _a_ev) = api.relay.join("a").await;
    let t = api.server_token.clone();
    let signal = "/v1/sessions/test/signal";

    let e = error_of(
        api.post(signal, &t, json!({"type": "bad type", "data": ""}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((e.0, e.1), (StatusCode::BAD_REQUEST, 400));
    assert!(e.2.contains("type may only contain"), "{}", e.2);

    let e = error_of(
        api.post(signal, &t, json!({"type": "t", "data": "x".repeat(9000)}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (e.0, e.2.as_str()),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "data is 9000 bytes; the limit is 8192"
        )
    );

    let raw = api
        .http
        .post(format!("{}{signal}", api.base))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{\"type\": ")
        .send()
        .await
        .unwrap();
    let e = error_of(raw).await;
    assert_eq!(e.0, StatusCode::BAD_REQUEST);
    assert!(
        e.2.to_lowercase().contains("eof") || e.2.contains("parse"),
        "the parser's reason: {}",
        e.2
    );

    let e = error_of(
        api.http
            .post(format!("{}{signal}", api.base))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(e.0, StatusCode::UNAUTHORIZED);
    let e = error_of(
        api.post(signal, "not.a.token", json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(e.0, StatusCode::UNAUTHORIZED);
    let expired = api
        .relay
        .handle
        .tokens()
        .sign(&signalbox_proto::token::Claims {
            sid: "*".into(),
            role: Role::Server,
            name: None,
            data: None,
            exp: 1_000,
            iat: 1,
            jti: "x".into(),
            aud: None,
        })
        .unwrap();
    let e = error_of(api.post(signal, &expired, json!({})).send().await.unwrap()).await;
    assert_eq!(e.0, StatusCode::UNAUTHORIZED);
    assert!(e.2.contains("expired"), "{}", e.2);

    let other = api.relay.token_for("elsewhere", Role::Moderator, "m");
    let e = error_of(api.post(signal, &other, json!({})).send().await.unwrap()).await;
    assert_eq!(e.0, StatusCode::FORBIDDEN);
    let publisher = api.relay.token(Role::Publisher, "p");
    let e = error_of(
        api.post(signal, &publisher, json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(e.0, StatusCode::FORBIDDEN);

    let e = error_of(
        api.post("/v1/sessions/nobody/signal", &t, json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(e.0, StatusCode::NOT_FOUND);
    let stranger = format!(
        "/v1/sessions/test/connections/{}/signal",
        signalbox_proto::ConnectionId::random()
    );
    let e = error_of(api.post(&stranger, &t, json!({})).send().await.unwrap()).await;
    assert_eq!((e.0, e.1), (StatusCode::NOT_FOUND, 404));
    let (status, _) = api.get("/v1/nothing/here", &t).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A moderator of the session may use it.
    let moderator = api.relay.token(Role::Moderator, "m");
    let r = api
        .post(signal, &moderator, json!({"type": "ok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(a.is_connected());
}

#[tokio::test]
async fn lists_and_kick_match_who_is_there() {
    let api = Api::start().await;
    let (a, _a_ev) = api.relay.join("alice").await;
    let (b, mut b_ev) = api.relay.join("bob").await;
    let t = &api.server_token;

    let (status, sessions) = api.get("/v1/sessions", t).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sessions, json!([{"id": "test", "connections": 2}]));
    let (_, conns) = api.get("/v1/sessions/test/connections", t).await;
    let names: Vec<&str> = conns
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["alice", "bob"]);
    assert_eq!(conns[0]["id"], json!(a.me().id.to_string()));
    assert_eq!(conns[0]["role"], "publisher");

    let r = api
        .http
        .delete(format!(
            "{}/v1/sessions/test/connections/{}",
            api.base,
            a.me().id
        ))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (who, why) = expect(&mut b_ev, "alice's removal", |e| match e {
        Event::Left { peer, reason } => Some((peer.id, reason)),
        _ => None,
    })
    .await;
    assert_eq!((who, why), (a.me().id, LeftReason::ForceDisconnected));
    let (_, conns) = api.get("/v1/sessions/test/connections", t).await;
    assert_eq!(conns.as_array().unwrap().len(), 1);
    let r = api
        .http
        .delete(format!(
            "{}/v1/sessions/test/connections/{}",
            api.base,
            a.me().id
        ))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(b.is_connected());
}

#[tokio::test]
async fn health_is_open_and_metrics_count() {
    let api = Api::start().await;
    let (_a, mut a_ev) = api.relay.join("a").await;
    let r = api
        .http
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "metrics need a token");

    let metrics = || async {
        api.http
            .get(format!("{}/metrics", api.base))
            .bearer_auth(&api.server_token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let value = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let before = metrics().await;
    assert_eq!(value(&before, "signalbox_connections "), 1.0);
    for _ in 0..3 {
        api.post(
            "/v1/sessions/test/signal",
            &api.server_token,
            json!({"type": "t"}),
        )
        .send()
        .await
        .unwrap();
    }
    api.post(
        "/v1/sessions/test/signal",
        &api.server_token,
        json!({"type": "bad type"}),
    )
    .send()
    .await
    .unwrap();
    signals(&mut a_ev, 3).await;
    let after = metrics().await;
    assert_eq!(
        value(&after, "signalbox_signals_in_total") - value(&before, "signalbox_signals_in_total"),
        3.0
    );
    assert!(
        value(&after, "signalbox_rest_requests_total{status=\"204\"}") >= 3.0,
        "{after}"
    );
    assert!(
        value(&after, "signalbox_rest_requests_total{status=\"400\"}") >= 1.0,
        "{after}"
    );
}

#[tokio::test]
async fn request_bodies_are_size_limited() {
    let api = Api::start().await;
    let (_a, _ev) = api.relay.join("a").await;
    let huge = json!({"type": "t", "data": "x".repeat(600 * 1024)});
    let r = api
        .post("/v1/sessions/test/signal", &api.server_token, huge)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(r).await;
    assert_eq!((status, code), (StatusCode::PAYLOAD_TOO_LARGE, 413));
}
