//! What a hostile peer sends, against a real relay: each test is one finding of the security
//! review, and fails if the hole it names opens again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use signalbox_client::{Client, ConnectOptions};
use signalbox_proto::SessionId;

const API_KEY: &str = "47700001";
const API_SECRET: &str = "5f1ce0c1a4a9d3e2b6f7a8091b2c3d4e5f607182";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(API_SECRET.as_bytes()),
    )
    .unwrap()
}

/// A server-call token as the SDKs mint it: three minutes of life.
fn project_token() -> String {
    sign(
        &json!({"iss": API_KEY, "ist": "project", "iat": now(), "exp": now() + 180, "jti": "0.42"}),
    )
}

/// A client token as the SDKs mint it for `role` (same key, same `iss` and `ist`).
fn client_token(session: &str, role: &str) -> String {
    sign(&json!({
        "iss": API_KEY, "ist": "project", "iat": now(), "exp": now() + 86_400, "nonce": 0.5,
        "scope": "session.connect", "session_id": session, "role": role,
        "connection_data": "name=mallory", "initial_layout_class_list": ""
    }))
}

async fn vonage_relay() -> (TestRelay, String) {
    let relay = TestRelay::start_with(|c| {
        c.http = Some("127.0.0.1:0".parse().unwrap());
        c.vonage_api_key = Some(API_KEY.into());
        c.vonage_api_secret = Some(API_SECRET.into());
    })
    .await;
    let base = format!("http://{}", relay.handle.http_addr().unwrap());
    (relay, base)
}

/// Item 1 (critical): a participant's client token is not a server credential. It joins its
/// session, but lists, signals, force-disconnects and creates sessions nowhere.
#[tokio::test]
async fn a_client_token_is_not_a_server_credential() {
    let (relay, base) = vonage_relay().await;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/session/create"))
        .header("x-opentok-auth", project_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = created[0]["session_id"].as_str().unwrap().to_owned();

    // A victim in the session, and the attacker joined with its own (valid) subscriber token.
    let options = |token: String| {
        ConnectOptions::new(
            "127.0.0.1",
            relay.handle.quic_addr().port(),
            SessionId::new(sid.clone()).unwrap(),
        )
        .with_fingerprint(relay.handle.fingerprint())
        .with_token(token)
    };
    let (victim, mut victim_events) = Client::connect(options(client_token(&sid, "publisher")))
        .await
        .unwrap();
    let attacker_token = client_token(&sid, "subscriber");
    let (_attacker, _) = Client::connect(options(attacker_token.clone()))
        .await
        .unwrap();
    let victim_id = victim.me().id;

    let conn = format!("{base}/v2/project/{API_KEY}/session/{sid}/connection");
    let signal_body = json!({"type": "chat", "data": "forged"});
    for token in [
        attacker_token,
        client_token(&sid, "moderator"),
        client_token("another-session", "publisher"),
    ] {
        let calls = [
            http.get(&conn),
            http.post(format!("{base}/v2/project/{API_KEY}/session/{sid}/signal"))
                .json(&signal_body),
            http.post(format!("{conn}/{victim_id}/signal"))
                .json(&signal_body),
            http.delete(format!("{conn}/{victim_id}")),
            http.post(format!("{base}/session/create")),
        ];
        for call in calls {
            let r = call.header("x-opentok-auth", &token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{:?}", r.url());
        }
    }

    // A token with a project's claims but a day of life is refused too; a real one works.
    let long =
        sign(&json!({"iss": API_KEY, "ist": "project", "iat": now(), "exp": now() + 86_400}));
    let r = http
        .get(&conn)
        .header("x-opentok-auth", long)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .get(&conn)
        .header("x-opentok-auth", project_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let list: Value = r.json().await.unwrap();
    assert_eq!(list["count"], 2);

    // Nothing forged reached the victim, and it is still there.
    no_signal(&mut victim_events, std::time::Duration::from_millis(300)).await;
    assert_eq!(relay.handle.members(&SessionId::new(sid).unwrap()).len(), 2);
}
