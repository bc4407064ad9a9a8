//! Shared helpers for the sandbox integration tests: start a sandbox on a random port, get
//! tokens the way a client would, and call the API with reqwest.
#![allow(dead_code)]

use bling_ledger::sandbox::{Sandbox, SandboxConfig};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

pub const CLIENT_ID: &str = SandboxConfig::DEMO_CLIENT_ID;
pub const CLIENT_SECRET: &str = SandboxConfig::DEMO_CLIENT_SECRET;

/// Defaults with the per-second limit off, so functional tests are not throttled.
pub fn unthrottled() -> SandboxConfig {
    SandboxConfig {
        rate_limit_per_sec: 0,
        ..SandboxConfig::default()
    }
}

pub async fn start(config: SandboxConfig) -> Sandbox {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    Sandbox::start(config, listener)
        .await
        .expect("sandbox starts")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

/// A code obtained with `auto_approve=1`, as the test-only shortcut of the consent page.
pub async fn code_for(sb: &Sandbox, account: &str) -> String {
    let resp = http()
        .get(sb.authorize_url())
        .query(&[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("state", "st"),
            ("account", account),
            ("auto_approve", "1"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = resp.headers()["location"]
        .to_str()
        .expect("ascii location")
        .to_string();
    query_value(&location, "code").expect("code in redirect")
}

pub fn query_value(url: &str, key: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

/// POSTs a form to the token endpoint with Basic credentials; returns status and JSON body.
pub async fn token_call(sb: &Sandbox, secret: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let resp = http()
        .post(sb.token_url())
        .basic_auth(CLIENT_ID, Some(secret))
        .form(form)
        .send()
        .await
        .expect("token endpoint answers");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub async fn exchange(sb: &Sandbox, code: &str) -> (StatusCode, Value) {
    token_call(
        sb,
        CLIENT_SECRET,
        &[("grant_type", "authorization_code"), ("code", code)],
    )
    .await
}

/// An access token for `account` through the real code flow.
pub async fn login(sb: &Sandbox, account: &str) -> Api {
    let code = code_for(sb, account).await;
    let (status, body) = exchange(sb, &code).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    Api::new(sb, body["access_token"].as_str().expect("access_token"))
}

/// A tiny Bling API client for tests: every call returns the status and the JSON body (Null
/// when empty).
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub fn new(sb: &Sandbox, token: &str) -> Api {
        Api {
            http: http(),
            base: sb.base_url(),
            token: token.to_string(),
        }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("sandbox answers");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn post_empty(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)))
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let req = self.http.patch(format!("{}{path}", self.base));
        self.send(match body {
            Some(b) => req.json(b),
            None => req,
        })
        .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    /// Creates a valid contato (a CPF person) and returns its id.
    pub async fn contato(&self, nome: &str, cpf: &str) -> i64 {
        let (status, body) = self
            .post(
                "/contatos",
                &serde_json::json!({"nome": nome, "tipo": "F", "numeroDocumento": cpf}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["data"]["id"].as_i64().expect("id")
    }
}

/// The `fields[].element` values of a Bling error body.
pub fn error_elements(body: &Value) -> Vec<String> {
    body["error"]["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|x| x["element"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
