//! The pet-shop system's side of the demo: a small receiver of the ledger's notifications that
//! verifies each signature (Standard Webhooks) before it believes a word, as a real one must.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::notify::signing;

/// One notification as the receiver took it.
#[derive(Debug, Clone)]
pub struct Taken {
    pub payload: Value,
    pub verified: bool,
}

/// A running receiver; the secret is set once the endpoint exists (it is shown only then).
#[derive(Clone, Default)]
pub struct Receiver {
    key: Arc<Mutex<Vec<u8>>>,
    taken: Arc<Mutex<Vec<Taken>>>,
}

impl Receiver {
    /// Listens on a random local port; returns it and its URL.
    pub async fn start() -> std::io::Result<(Receiver, String)> {
        let receiver = Receiver::default();
        let me = receiver.clone();
        let app = axum::Router::new().route(
            "/hooks/bling",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let me = me.clone();
                async move { me.take(&headers, body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hooks/bling", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((receiver, url))
    }

    pub fn set_secret(&self, secret: &str) -> Result<(), signing::BadSecret> {
        *self.key.lock().unwrap_or_else(|p| p.into_inner()) = signing::secret_key(secret)?;
        Ok(())
    }

    fn take(&self, headers: &HeaderMap, body: String) -> StatusCode {
        let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        let key = self.key.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let timestamp = h("webhook-timestamp").parse::<i64>().unwrap_or(0);
        let fresh = (chrono::Utc::now().timestamp() - timestamp).abs() <= 300;
        let expected = signing::sign(&key, h("webhook-id"), timestamp, &body);
        let verified = fresh
            && !key.is_empty()
            && h("webhook-signature")
                .split(' ')
                .any(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())));
        let payload = serde_json::from_str(&body).unwrap_or(Value::Null);
        self.taken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Taken { payload, verified });
        if verified {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::UNAUTHORIZED
        }
    }

    pub fn taken(&self) -> Vec<Taken> {
        self.taken.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many verified notifications of each type, in first-seen order.
    pub fn tally(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for t in self.taken().into_iter().filter(|t| t.verified) {
            let kind = t.payload["type"].as_str().unwrap_or("?").to_string();
            match out.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => out.push((kind, 1)),
            }
        }
        out
    }
}
