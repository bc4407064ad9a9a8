//! Telling the pet-shop system (`bling_ledger::notify`): endpoints, signed deliveries verified
//! by the public `standardwebhooks` npm library (tests/standard_webhooks/verify.js), the retry
//! schedule, a receiver down then back, an endpoint disabled after failing continuously,
//! resend, the change feed across restarts, and the self-service reconnect link.
//!
//! Receivers are real HTTP servers on local ports. Events come from the ledger's own commands
//! (ingest over HTTP, then the failure the sync worker would record) or, end to end, from the
//! sync worker against the sandbox.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregates::ids::TenantId;
use aggregates::invoice::InvoiceCommand;
use aggregates::sync::FailureCause;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bling_ledger::ledger::{Actor, CommandContext};
use bling_ledger::notify::NotifySettings;
use bling_ledger::server::Server;
use serde_json::{json, Value};

use crate::support::*;

// ---------------------------------------------------------------- a receiver

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    headers: HashMap<String, String>,
    body: String,
    at: Instant,
}

impl Received {
    fn payload(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
    fn id(&self) -> String {
        self.headers["webhook-id"].clone()
    }
}

/// What the receiver answers next: a queue of (status, Retry-After), then `otherwise`.
#[derive(Default)]
struct Script {
    queue: Vec<(u16, Option<u64>)>,
    otherwise: u16,
}

#[derive(Clone)]
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let r = Receiver {
            port: listener.local_addr().expect("addr").port(),
            got: Arc::default(),
            script: Arc::new(Mutex::new(Script {
                queue: Vec::new(),
                otherwise: 200,
            })),
            task: Arc::default(),
        };
        r.serve(listener);
        r
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let got = Arc::clone(&self.got);
        let script = Arc::clone(&self.script);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let got = Arc::clone(&got);
                let script = Arc::clone(&script);
                async move {
                    let (status, retry_after) = {
                        let mut s = script.lock().unwrap();
                        if s.queue.is_empty() {
                            (s.otherwise, None)
                        } else {
                            s.queue.remove(0)
                        }
                    };
                    got.lock().unwrap().push(Received {
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect(),
                        body,
                        at: Instant::now(),
                    });
                    let mut response = (
                        StatusCode::from_u16(status).unwrap(),
                        format!("answered {status}"),
                    )
                        .into_response();
                    if let Some(secs) = retry_after {
                        response
                            .headers_mut()
                            .insert("retry-after", secs.to_string().parse().unwrap());
                    }
                    response
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        *self.task.lock().unwrap() = Some(task);
    }

    /// Stops listening: deliveries are refused at the TCP level.
    async fn go_down(&self) {
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    async fn come_back(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("rebind the receiver's port");
        self.serve(listener);
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn answer(&self, queue: Vec<(u16, Option<u64>)>, otherwise: u16) {
        *self.script.lock().unwrap() = Script { queue, otherwise };
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The distinct messages received, in the order each first arrived.
    fn ids(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for r in self.got() {
            let id = r.id();
            if !seen.contains(&id) {
                seen.push(id);
            }
        }
        seen
    }
}

// ---------------------------------------------------------------- the ledger

/// Retries short enough for tests: `delays` (no jitter), disabled after `disable_after`.
fn fast(delays: &[u64], disable_after: Duration) -> impl FnOnce(&mut NotifySettings) {
    let delays: Vec<Duration> = delays.iter().map(|ms| Duration::from_millis(*ms)).collect();
    move |n: &mut NotifySettings| {
        n.delivery.schedule.delays = delays;
        n.delivery.schedule.jitter = 0.0;
        n.delivery.schedule.max_retry_after = Duration::from_secs(5);
        n.delivery.disable_after = disable_after;
        n.delivery.poll_interval = Duration::from_millis(50);
        n.delivery.timeout = Duration::from_secs(2);
        n.poll_interval = Duration::from_millis(50);
    }
}

/// The ledger alone (no Bling app) on `url`, with the notifier's settings changed by `tweak`.
async fn ledger(url: &str, tweak: impl FnOnce(&mut NotifySettings)) -> Server {
    let mut notify = NotifySettings::default();
    tweak(&mut notify);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    Server::start_with(
        bling_ledger::server::Settings {
            database_url: url.to_string(),
            max_connections: 8,
            tokens: test_tokens(),
            auth: None,
            sync: Default::default(),
        },
        listener,
        notify,
    )
    .await
    .expect("the ledger starts")
}

async fn request(
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut r = client
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{base}{path}"),
        )
        .bearer_auth(token);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let response = r.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Subscribes `url` to `types` for `tenant`; returns (endpoint id, secret).
async fn subscribe(base: &str, tenant: &str, url: &str, types: &[&str]) -> (String, String) {
    let (status, body) = request(
        base,
        ADMIN_TOKEN,
        "POST",
        &format!("/v1/tenants/{tenant}/endpoints"),
        Some(json!({"url": url, "event_types": types, "description": "test receiver"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_string(),
        body["secret"].as_str().unwrap().to_string(),
    )
}

/// Registers a customer and bills `invoice` to it, over HTTP.
async fn bill(base: &str, tenant: &str, invoice: &str) {
    let (status, body) = request(
        base,
        ADMIN_TOKEN,
        "PUT",
        &format!("/v1/tenants/{tenant}/customers/c-{invoice}"),
        Some(customer_body("Maria")),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body) = request(
        base,
        ADMIN_TOKEN,
        "POST",
        &format!("/v1/tenants/{tenant}/invoices/{invoice}/bill"),
        Some(invoice_body(&format!("c-{invoice}"), invoice)),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {body}");
}

/// Records a failed sync attempt on `invoice`, as the sync worker does when Bling is down:
/// one `invoice.failed` notification.
async fn fail(server: &Server, tenant: &str, invoice: &str, attempt: u32) {
    let ctx = CommandContext::new(
        TenantId::parse(tenant).unwrap(),
        format!("test-{invoice}-{attempt}"),
        Actor::Worker,
    );
    server
        .ledger
        .execute_invoice(
            &ctx,
            invoice,
            InvoiceCommand::RecordSyncFailed {
                cause: FailureCause::BlingUnavailable {
                    message: "GET /pedidos/vendas answered 503".into(),
                },
                attempt,
                retry_at: None,
                calls: vec![],
            },
        )
        .await
        .expect("record the failure");
}

// ---------------------------------------------------------------- standardwebhooks (npm)

fn verifier_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standard_webhooks")
}

/// Installs tests/standard_webhooks/node_modules when missing (.ci/run does it up front).
fn npm_ci(dir: &Path) {
    if dir
        .join("node_modules/standardwebhooks/package.json")
        .exists()
    {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .expect("npm runs (node and npm are needed to verify with the standardwebhooks library)");
    assert!(
        out.status.success(),
        "npm ci in tests/standard_webhooks failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Verifies deliveries with the public `standardwebhooks` library; one verdict per delivery.
fn verify_with_library(
    secret: &str,
    deliveries: &[(HashMap<String, String>, String)],
) -> Vec<Value> {
    let dir = verifier_dir();
    npm_ci(&dir);
    let input = json!({
        "secret": secret,
        "deliveries": deliveries.iter().map(|(h, b)| json!({"headers": h, "body": b})).collect::<Vec<_>>(),
    });
    let mut child = Command::new("node")
        .arg("verify.js")
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs verify.js");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.to_string().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "verify.js: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a verdict"))
        .collect()
}

// ---------------------------------------------------------------- tests

async fn endpoints_are_managed_by_admins_with_clear_errors(t: TestDb) {
    let server = ledger(&t.url, |_| {}).await;
    let base = server.base_url();
    let path = "/v1/tenants/shop-a/endpoints";

    let (status, body) = request(&base, ADMIN_TOKEN, "POST", path, Some(json!({}))).await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["url", "event_types"]);

    let (status, body) = request(
        &base,
        ADMIN_TOKEN,
        "POST",
        path,
        Some(json!({"url": "ftp://x", "event_types": ["invoice.synced", "invoice.paid", "invoice.synced"]})),
    )
    .await;
    assert_eq!(status, 422);
    let problems: Vec<(String, String)> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["field"].as_str().unwrap().into(),
                f["problem"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(problems[0].0, "url");
    assert_eq!(problems[1].0, "event_types[1]");
    assert!(problems[1].1.contains("invoice.paid") && problems[1].1.contains("connection.revoked"));
    assert_eq!(problems[2].0, "event_types[2]");
    let (status, body) = request(
        &base,
        ADMIN_TOKEN,
        "POST",
        path,
        Some(json!({"url": "http://h/x", "event_types": ["invoice.synced"], "colour": "red"})),
    )
    .await;
    assert_eq!(status, 400, "unknown fields are refused: {body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("colour"));

    // Admin only; support reads.
    let good = json!({"url": "https://petshop.example/hooks/bling", "event_types": ["invoice.failed", "connection.revoked"]});
    let (status, _) = request(&base, SUPPORT_TOKEN, "POST", path, Some(good.clone())).await;
    assert_eq!(status, 403);
    let (status, created) = request(&base, ADMIN_TOKEN, "POST", path, Some(good)).await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap().to_string();
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["enabled"], true);

    let (status, listed) = request(&base, SUPPORT_TOKEN, "GET", path, None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["endpoints"].as_array().unwrap().len(), 1);
    assert!(
        !listed.to_string().contains("whsec_"),
        "the secret is shown once"
    );
    let (status, _) = request(&base, INGEST_B_TOKEN, "GET", path, None).await;
    assert_eq!(status, 403, "another tenant's token");

    let one = format!("{path}/{id}");
    let (status, body) = request(
        &base,
        ADMIN_TOKEN,
        "PATCH",
        &one,
        Some(json!({"enabled": false, "event_types": ["invoice.synced"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], false);
    assert_eq!(body["event_types"], json!(["invoice.synced"]));
    let (status, body) = request(
        &base,
        ADMIN_TOKEN,
        "PATCH",
        &one,
        Some(json!({"url": "nope"})),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["fields"][0]["field"], "url");
    let (status, body) = request(&base, ADMIN_TOKEN, "GET", &format!("{path}/bad id"), None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["fields"][0]["field"], "endpoint");

    let (status, _) = request(&base, ADMIN_TOKEN, "DELETE", &one, None).await;
    assert_eq!(status, 204);
    let (status, body) = request(&base, ADMIN_TOKEN, "GET", &one, None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["fields"][0]["field"], "endpoint");
    server.stop().await.unwrap();
}
both_backends!(
    endpoints_crud,
    endpoints_are_managed_by_admins_with_clear_errors
);

async fn deliveries_verify_with_the_standardwebhooks_library(t: TestDb) {
    let server = ledger(&t.url, fast(&[0, 100, 200], Duration::from_secs(3600))).await;
    let base = server.base_url();
    let receiver = Receiver::start().await;
    let (_, secret) = subscribe(&base, "shop-a", &receiver.url(), &["invoice.failed"]).await;
    bill(&base, "shop-a", "inv-1").await;
    bill(&base, "shop-a", "inv-2").await;
    fail(&server, "shop-a", "inv-1", 1).await;
    fail(&server, "shop-a", "inv-2", 1).await;
    fail(&server, "shop-a", "inv-1", 2).await;
    assert!(eventually(20, || async { receiver.got().len() >= 3 }).await);
    let got = receiver.got();
    assert_eq!(
        got.len(),
        3,
        "one delivery per failure, nothing for the billing"
    );

    let payloads: Vec<Value> = got.iter().map(Received::payload).collect();
    let invoices: Vec<&str> = payloads
        .iter()
        .map(|p| p["data"]["invoice_id"].as_str().unwrap())
        .collect();
    assert_eq!(invoices, ["inv-1", "inv-2", "inv-1"], "in ledger order");
    let positions: Vec<i64> = payloads
        .iter()
        .map(|p| p["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    for (r, p) in got.iter().zip(&payloads) {
        assert_eq!(p["type"], "invoice.failed");
        assert_eq!(p["tenant"], "shop-a");
        assert_eq!(p["id"], r.id(), "the payload's id is the webhook-id");
        assert_eq!(p["id"], format!("msg_{}", p["position"]));
        assert_eq!(p["source"]["event"], "SyncFailed");
        assert_eq!(p["data"]["cause"]["code"], "bling_unavailable");
        assert_eq!(p["data"]["cause"]["transient"], true);
        assert!(!p["data"]["advice"].as_str().unwrap().is_empty());
        assert_eq!(r.headers["content-type"], "application/json");
    }
    assert_eq!(payloads[2]["data"]["attempt"], 2);

    // The public library accepts every delivery, and refuses a changed body or another secret.
    let deliveries: Vec<_> = got
        .iter()
        .map(|r| (r.headers.clone(), r.body.clone()))
        .collect();
    let verdicts = verify_with_library(&secret, &deliveries);
    assert_eq!(verdicts.len(), 3);
    for (v, p) in verdicts.iter().zip(&payloads) {
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["id"], p["id"]);
    }
    let mut tampered = deliveries[0].clone();
    tampered.1 = tampered.1.replace("inv-1", "inv-9");
    let other = bling_ledger::notify::signing::new_secret();
    assert_eq!(verify_with_library(&secret, &[tampered])[0]["ok"], false);
    assert_eq!(
        verify_with_library(&other, &deliveries[..1])[0]["ok"],
        false
    );
    server.stop().await.unwrap();
}
both_backends!(
    standard_webhooks,
    deliveries_verify_with_the_standardwebhooks_library
);

async fn retries_follow_the_schedule_with_the_same_id_and_honour_retry_after(t: TestDb) {
    let server = ledger(&t.url, fast(&[0, 300, 600, 300], Duration::from_secs(3600))).await;
    let base = server.base_url();
    let receiver = Receiver::start().await;
    // 500, then 429 asking for 2 s (more than the schedule's 600 ms), then 503, then accepted.
    receiver.answer(vec![(500, None), (429, Some(2)), (503, None)], 200);
    let (endpoint, _) = subscribe(&base, "shop-a", &receiver.url(), &["invoice.failed"]).await;
    bill(&base, "shop-a", "inv-1").await;
    fail(&server, "shop-a", "inv-1", 1).await;
    assert!(eventually(20, || async { receiver.got().len() >= 4 }).await);
    let got = receiver.got();
    assert_eq!(got.len(), 4);
    let ids: Vec<String> = got.iter().map(Received::id).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the same webhook-id on every retry: {ids:?}"
    );
    let bodies: Vec<&str> = got.iter().map(|r| r.body.as_str()).collect();
    assert!(bodies.iter().all(|b| *b == bodies[0]), "the same body");
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(280), "{gaps:?}");
    assert!(
        gaps[1] >= Duration::from_millis(1950),
        "Retry-After honoured: {gaps:?}"
    );
    assert!(gaps[2] >= Duration::from_millis(280), "{gaps:?}");

    // Support sees every attempt: time, status, latency, the answer's start. The last one is
    // recorded once its answer reached the notifier, a moment after the receiver saw it.
    let message_path = format!("/v1/tenants/shop-a/messages/{}", ids[0]);
    assert!(
        eventually(10, || async {
            let (_, message) = request(&base, SUPPORT_TOKEN, "GET", &message_path, None).await;
            message["attempts"].as_array().map_or(0, Vec::len) >= 4
        })
        .await,
        "the fourth attempt is recorded"
    );
    let (status, message) = request(&base, SUPPORT_TOKEN, "GET", &message_path, None).await;
    assert_eq!(status, 200);
    let attempts = message["attempts"].as_array().unwrap();
    let statuses: Vec<i64> = attempts
        .iter()
        .map(|a| a["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 429, 503, 200]);
    assert_eq!(attempts[1]["response_excerpt"], "answered 429");
    assert!(attempts
        .iter()
        .all(|a| a["latency_ms"].as_i64().is_some() && a["at_ms"].as_i64().is_some()));
    let (_, deliveries) = request(
        &base,
        SUPPORT_TOKEN,
        "GET",
        &format!("/v1/tenants/shop-a/endpoints/{endpoint}/deliveries"),
        None,
    )
    .await;
    assert_eq!(deliveries["deliveries"][0]["state"], "delivered");
    assert_eq!(deliveries["deliveries"][0]["attempts"], 4);

    // A message whose every attempt fails is given up (kept as failed) and the next one goes.
    receiver.answer(vec![(500, None); 4], 200);
    bill(&base, "shop-a", "inv-2").await;
    fail(&server, "shop-a", "inv-2", 1).await;
    fail(&server, "shop-a", "inv-2", 2).await;
    assert!(eventually(20, || async { receiver.got().len() >= 9 }).await);
    let (_, failed) = request(
        &base,
        SUPPORT_TOKEN,
        "GET",
        &format!("/v1/tenants/shop-a/endpoints/{endpoint}/deliveries?state=failed"),
        None,
    )
    .await;
    let failed = failed["deliveries"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["attempts"], 4);
    assert_eq!(failed[0]["last_status"], 500);

    // Resend that one: delivered, with its own id again.
    let failed_id = failed[0]["message_id"].as_str().unwrap().to_string();
    let (status, body) = request(
        &base,
        SUPPORT_TOKEN,
        "POST",
        &format!("/v1/tenants/shop-a/endpoints/{endpoint}/resend"),
        Some(json!({"message_id": failed_id})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert!(
        eventually(10, || async {
            receiver.got().last().map(Received::id) == Some(failed_id.clone())
                && receiver.got().len() >= 10
        })
        .await
    );
    // And a time range: everything created in the last hour, again.
    let now = chrono::Utc::now();
    let (status, body) = request(
        &base,
        SUPPORT_TOKEN,
        "POST",
        &format!("/v1/tenants/shop-a/endpoints/{endpoint}/resend"),
        Some(json!({"from": (now - chrono::Duration::hours(1)).to_rfc3339(), "to": (now + chrono::Duration::minutes(1)).to_rfc3339()})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["resent"], 3);
    let (status, body) = request(
        &base,
        SUPPORT_TOKEN,
        "POST",
        &format!("/v1/tenants/shop-a/endpoints/{endpoint}/resend"),
        Some(json!({"from": "yesterday"})),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["fields"][0]["field"], "from");
    assert!(eventually(10, || async { receiver.got().len() >= 13 }).await);
    server.stop().await.unwrap();
}
both_backends!(
    retry_schedule,
    retries_follow_the_schedule_with_the_same_id_and_honour_retry_after
);

async fn a_receiver_down_then_back_gets_everything_in_ledger_order(t: TestDb) {
    // Retries every 200 ms for 30 s: long enough to outlast the outage on a busy machine.
    let mut delays = vec![0];
    delays.extend(std::iter::repeat_n(200, 150));
    let server = ledger(&t.url, fast(&delays, Duration::from_secs(3600))).await;
    let base = server.base_url();
    let down = Receiver::start().await;
    let up = Receiver::start().await;
    subscribe(&base, "shop-a", &down.url(), &["invoice.failed"]).await;
    subscribe(&base, "shop-b", &up.url(), &["invoice.failed"]).await;
    down.go_down().await;

    for i in 0..4 {
        bill(&base, "shop-a", &format!("a-{i}")).await;
        bill(&base, "shop-b", &format!("b-{i}")).await;
    }
    for attempt in 1..=3 {
        for i in 0..4 {
            fail(&server, "shop-a", &format!("a-{i}"), attempt).await;
            fail(&server, "shop-b", &format!("b-{i}"), attempt).await;
        }
    }
    // shop-b is not held back by shop-a's dead receiver.
    assert!(eventually(20, || async { up.ids().len() >= 12 }).await);
    assert!(down.got().is_empty());

    down.come_back().await;
    assert!(eventually(30, || async { down.ids().len() >= 12 }).await);
    for (receiver, tenant) in [(&down, "shop-a"), (&up, "shop-b")] {
        let (_, feed) = request(
            &base,
            ADMIN_TOKEN,
            "GET",
            &format!("/v1/tenants/{tenant}/changes?limit=100"),
            None,
        )
        .await;
        let expected: Vec<String> = feed["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(expected.len(), 12);
        assert_eq!(
            receiver.ids(),
            expected,
            "{tenant}: every message, in ledger order"
        );
        let tenants: Vec<Value> = receiver
            .got()
            .iter()
            .map(|r| r.payload()["tenant"].clone())
            .collect();
        assert!(tenants.iter().all(|t| t == tenant));
    }
    server.stop().await.unwrap();
}
both_backends!(
    down_then_back,
    a_receiver_down_then_back_gets_everything_in_ledger_order
);

async fn an_endpoint_failing_continuously_is_disabled_and_shown(t: TestDb) {
    let server = ledger(
        &t.url,
        fast(
            &[
                0, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100,
            ],
            Duration::from_millis(800),
        ),
    )
    .await;
    let base = server.base_url();
    let receiver = Receiver::start().await;
    receiver.answer(vec![], 500);
    let (endpoint, _) = subscribe(&base, "shop-a", &receiver.url(), &["invoice.failed"]).await;
    bill(&base, "shop-a", "inv-1").await;
    fail(&server, "shop-a", "inv-1", 1).await;
    let one = format!("/v1/tenants/shop-a/endpoints/{endpoint}");
    assert!(
        eventually(20, || async {
            request(&base, SUPPORT_TOKEN, "GET", &one, None).await.1["enabled"] == false
        })
        .await
    );
    let (_, shown) = request(&base, SUPPORT_TOKEN, "GET", &one, None).await;
    assert!(shown["disabled_at"].is_string(), "{shown}");
    assert!(shown["failing_since"].is_string());
    let reason = shown["disabled_reason"].as_str().unwrap();
    assert!(
        reason.contains("every delivery attempt failed") && reason.contains("HTTP 500"),
        "{reason}"
    );
    // Nothing more is sent while it is disabled; the message waits.
    let attempts = receiver.got().len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.got().len(), attempts);
    let (_, pending) = request(
        &base,
        SUPPORT_TOKEN,
        "GET",
        &format!("{one}/deliveries?state=pending"),
        None,
    )
    .await;
    assert_eq!(pending["deliveries"].as_array().unwrap().len(), 1);

    // Fixed and enabled again: the waiting message goes, the streak is over.
    receiver.answer(vec![], 200);
    let (status, body) = request(
        &base,
        ADMIN_TOKEN,
        "PATCH",
        &one,
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["disabled_reason"], Value::Null);
    assert!(
        eventually(10, || async {
            request(
                &base,
                SUPPORT_TOKEN,
                "GET",
                &format!("{one}/deliveries?state=delivered"),
                None,
            )
            .await
            .1["deliveries"]
                .as_array()
                .is_some_and(|d| d.len() == 1)
        })
        .await
    );
    let (_, shown) = request(&base, SUPPORT_TOKEN, "GET", &one, None).await;
    assert_eq!(shown["failing_since"], Value::Null);
    assert_eq!(shown["enabled"], true);
    server.stop().await.unwrap();
}
both_backends!(
    disabled_after_failing,
    an_endpoint_failing_continuously_is_disabled_and_shown
);

async fn the_change_feed_resumes_across_restarts_without_loss_or_repeat(t: TestDb) {
    let server = ledger(&t.url, |_| {}).await;
    let base = server.base_url();
    for i in 0..5 {
        bill(&base, "shop-a", &format!("inv-{i}")).await;
        fail(&server, "shop-a", &format!("inv-{i}"), 1).await;
    }
    bill(&base, "shop-b", "other").await;
    fail(&server, "shop-b", "other", 1).await;

    let feed = |base: String, after: String, extra: &'static str| async move {
        request(
            &base,
            INGEST_TOKEN,
            "GET",
            &format!("/v1/tenants/shop-a/changes?after={after}&limit=2{extra}"),
            None,
        )
        .await
    };
    let mut seen: Vec<Value> = Vec::new();
    let mut cursor = String::new();
    assert!(
        eventually(20, || {
            let base = base.clone();
            async move {
                request(
                    &base,
                    INGEST_TOKEN,
                    "GET",
                    "/v1/tenants/shop-a/changes?limit=100",
                    None,
                )
                .await
                .1["changes"]
                    .as_array()
                    .is_some_and(|c| c.len() == 5)
            }
        })
        .await
    );
    // Read three, in pages of two.
    for _ in 0..2 {
        let (status, page) = feed(base.clone(), cursor.clone(), "").await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["changes"].as_array().unwrap().iter().cloned());
        cursor = page["next_cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(seen.len(), 4);
    server.stop().await.unwrap();

    // Another process, later: more events, and the feed goes on from the cursor.
    let server = ledger(&t.url, |_| {}).await;
    let base = server.base_url();
    for i in 5..8 {
        bill(&base, "shop-a", &format!("inv-{i}")).await;
        fail(&server, "shop-a", &format!("inv-{i}"), 1).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 8 && Instant::now() < deadline {
        let (status, page) = feed(base.clone(), cursor.clone(), "&wait=2").await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["changes"].as_array().unwrap().iter().cloned());
        cursor = page["next_cursor"].as_str().unwrap().to_string();
    }
    let invoices: Vec<&str> = seen
        .iter()
        .map(|c| c["data"]["invoice_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        invoices,
        ["inv-0", "inv-1", "inv-2", "inv-3", "inv-4", "inv-5", "inv-6", "inv-7"],
        "nothing lost, nothing repeated, in ledger order"
    );
    assert!(seen
        .iter()
        .all(|c| c["tenant"] == "shop-a" && c["type"] == "invoice.failed"));

    // Long-poll: an empty answer is held until a change arrives.
    let started = Instant::now();
    let waiting = tokio::spawn(feed(base.clone(), cursor.clone(), "&wait=20"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    bill(&base, "shop-a", "inv-late").await;
    fail(&server, "shop-a", "inv-late", 1).await;
    let (status, page) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(page["changes"][0]["data"]["invoice_id"], "inv-late");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // Nothing new: an immediate empty answer keeps the cursor.
    let last = page["next_cursor"].as_str().unwrap().to_string();
    let (_, empty) = feed(base.clone(), last.clone(), "").await;
    assert_eq!(empty["changes"], json!([]));
    assert_eq!(empty["next_cursor"], last);

    // Tenant-scoped, and a bad cursor or wait is named.
    let (status, _) = request(
        &base,
        INGEST_B_TOKEN,
        "GET",
        "/v1/tenants/shop-a/changes",
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = request(
        &base,
        INGEST_TOKEN,
        "GET",
        "/v1/tenants/shop-a/changes?after=abc",
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["fields"][0]["field"], "after");
    let (status, body) = request(
        &base,
        INGEST_TOKEN,
        "GET",
        "/v1/tenants/shop-a/changes?wait=600",
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["fields"][0]["field"], "wait");
    server.stop().await.unwrap();
}
both_backends!(
    change_feed,
    the_change_feed_resumes_across_restarts_without_loss_or_repeat
);

// ---------------------------------------------------------------- reconnect links

/// The whole stack (sandbox, sync worker) with a quick notifier.
async fn stack(t: &TestDb) -> Stack {
    let s = bling_ledger::stack::StackBuilder::new(&t.url)
        .tokens(test_tokens())
        .keys(test_key_ring())
        .sandbox(|s| s.rate_limit_per_sec = 0)
        .auth(|a| {
            a.state_ttl = Duration::from_secs(60);
            a.renewal_interval = Duration::from_secs(3600);
        })
        .sync(|c| {
            c.client.rate_limit_per_sec = 0;
            c.settings.poll_interval = Duration::from_millis(50);
        })
        .notify(fast(&[0, 100, 200], Duration::from_secs(3600)))
        .start()
        .await
        .expect("the stack starts");
    Stack {
        sandbox: s.sandbox,
        server: s.server,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    }
}

async fn link_rows(
    db: &bling_ledger::store::Db,
    tenant: &str,
) -> Vec<bling_ledger::store::reconnect_links::LinkRow> {
    bling_ledger::store::reconnect_links::list(db, tenant, 100)
        .await
        .unwrap()
}

async fn authorization_requests(db: &bling_ledger::store::Db) -> i64 {
    bling_ledger::store::events::count_in_stream(
        db,
        "BlingConnection",
        "shop-a",
        "AuthorizationRequested",
    )
    .await
    .unwrap()
}

async fn a_revoked_shop_reconnects_through_its_own_link(t: TestDb) {
    let stack = stack(&t).await;
    let base = stack.server.base_url();
    let receiver = Receiver::start().await;
    let (_, secret) = subscribe(
        &base,
        "shop-a",
        &receiver.url(),
        &[
            "invoice.synced",
            "connection.revoked",
            "connection.restored",
        ],
    )
    .await;
    let consent = stack.authorize_url("shop-a").await;
    let connected = reqwest::Client::new()
        .get(format!("{consent}&account=shop-a&auto_approve=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(connected.status(), 200);

    // End to end: the sync worker creates the order in Bling, the shop is told.
    bill(&base, "shop-a", "inv-1").await;
    assert!(eventually(30, || async { !receiver.got().is_empty() }).await);
    let synced = receiver.got()[0].payload();
    assert_eq!(synced["type"], "invoice.synced");
    assert_eq!(synced["data"]["invoice_id"], "inv-1");
    assert!(synced["data"]["bling_order_id"].as_i64().is_some());

    // The shop changes its Bling password: revoked, and told with a link.
    stack.sandbox.revoke_account("shop-a");
    let auth = stack.server.auth.as_ref().unwrap();
    let shop = TenantId::parse("shop-a").unwrap();
    let token = auth.tokens.access_token(&shop).await.unwrap();
    let _ = auth
        .tokens
        .renew_after_unauthorized(&shop, token.expose())
        .await;
    let of_type = |t: &'static str| {
        let receiver = receiver.clone();
        move || {
            receiver
                .got()
                .into_iter()
                .map(|r| r.payload())
                .find(|p| p["type"] == t)
        }
    };
    let revoked_one = of_type("connection.revoked");
    assert!(eventually(20, || async { revoked_one().is_some() }).await);
    let revoked = revoked_one().unwrap();
    assert_eq!(revoked["type"], "connection.revoked");
    assert_eq!(revoked["data"]["evidence"]["error_type"], "invalid_grant");
    let link = revoked["data"]["reconnect_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        link.starts_with(&format!("{base}/reconnect/shop-a/")),
        "{link}"
    );
    assert!(revoked["data"]["reconnect_expires_at"].is_string());
    let verdicts = verify_with_library(
        &secret,
        &receiver
            .got()
            .iter()
            .map(|r| (r.headers.clone(), r.body.clone()))
            .collect::<Vec<_>>(),
    );
    assert!(verdicts.iter().all(|v| v["ok"] == true), "{verdicts:?}");

    // Tampered, or moved to another tenant: refused before anything is looked up; nothing stored.
    let requests_before = authorization_requests(&t.db).await;
    let tampered = format!("{}A", link);
    let other_tenant = link.replace("/reconnect/shop-a/", "/reconnect/shop-b/");
    let longer = link.replace("expires=", "expires=9");
    for bad in [&tampered, &other_tenant, &longer] {
        let r = stack.http.get(bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.text().await.unwrap().contains("not one we issued"));
        let r = stack.http.post(bad).send().await.unwrap();
        assert_eq!(r.status(), 400);
    }
    assert!(link_rows(&t.db, "shop-a")
        .await
        .iter()
        .all(|l| l.opened_at_ms.is_none()));
    assert_eq!(authorization_requests(&t.db).await, requests_before);

    // The owner opens it: no token, one button; opening is recorded.
    let page = stack.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Continue to Bling"));
    let (_, links) = call(
        &stack,
        "GET",
        "/v1/tenants/shop-a/connection/reconnect-links",
        None,
    )
    .await;
    assert_eq!(links["links"][0]["state"], "opened");
    assert_eq!(links["links"][0]["created_by"], "connection.revoked");
    // It reaches nothing else: the API still wants a token.
    let r = stack
        .http
        .get(format!("{base}/v1/tenants/shop-a/connection"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // On to Bling's consent and back: reconnected.
    let to_bling = stack.http.post(&link).send().await.unwrap();
    assert_eq!(to_bling.status(), 303);
    let consent = to_bling.headers()["location"].to_str().unwrap().to_string();
    assert!(
        consent.starts_with(&stack.sandbox.base_url()) || consent.contains("/oauth/authorize"),
        "{consent}"
    );
    let back = reqwest::Client::new()
        .get(format!("{consent}&account=shop-a&auto_approve=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 200);
    assert!(back.text().await.unwrap().contains("Reconnected to Bling"));
    assert!(auth.tokens.access_token(&shop).await.is_ok());
    assert!(
        eventually(20, || async {
            receiver
                .got()
                .iter()
                .any(|r| r.payload()["type"] == "connection.restored")
        })
        .await
    );

    // Used: it explains itself and stores nothing.
    let requests_before = authorization_requests(&t.db).await;
    for method in ["GET", "POST"] {
        let r = stack
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                &link,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 410);
        assert!(r.text().await.unwrap().contains("already used"));
    }
    assert_eq!(authorization_requests(&t.db).await, requests_before);
    let (_, links) = call(
        &stack,
        "GET",
        "/v1/tenants/shop-a/connection/reconnect-links",
        None,
    )
    .await;
    assert_eq!(links["links"][0]["state"], "used");
    assert!(links["links"][0]["used_at"].is_string());

    // Support can send one too; an expired one explains itself and stores nothing.
    let (status, issued) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/connection/reconnect-link",
        None,
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    assert!(issued["url"]
        .as_str()
        .unwrap()
        .contains("/reconnect/shop-a/"));
    let (status, _) = request(
        &base,
        INGEST_TOKEN,
        "POST",
        "/v1/tenants/shop-a/connection/reconnect-link",
        None,
    )
    .await;
    assert_eq!(status, 403, "the pet-shop system's token cannot make links");
    let links = stack.server.notify.links().unwrap();
    let eight_days_ago = chrono::Utc::now().timestamp_millis() - 8 * 24 * 3600 * 1000;
    let old = links
        .issue(&t.db, "shop-a", "test", eight_days_ago)
        .await
        .unwrap();
    for method in ["GET", "POST"] {
        let r = stack
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                &old.url,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 410);
        assert!(r.text().await.unwrap().contains("expired"));
    }
    let row = link_rows(&t.db, "shop-a")
        .await
        .into_iter()
        .find(|l| l.link_id == old.link_id)
        .unwrap();
    assert_eq!((row.opened_at_ms, row.used_at_ms), (None, None));
    assert_eq!(authorization_requests(&t.db).await, requests_before);
    stack.stop().await;
}
both_backends!(
    reconnect_link,
    a_revoked_shop_reconnects_through_its_own_link
);

async fn two_processes_deliver_each_message_once_in_order(t: TestDb) {
    let one = ledger(&t.url, fast(&[0, 100, 200], Duration::from_secs(3600))).await;
    let two = ledger(&t.url, fast(&[0, 100, 200], Duration::from_secs(3600))).await;
    let receiver = Receiver::start().await;
    subscribe(
        &one.base_url(),
        "shop-a",
        &receiver.url(),
        &["invoice.failed"],
    )
    .await;
    for i in 0..6 {
        bill(&one.base_url(), "shop-a", &format!("inv-{i}")).await;
    }
    for attempt in 1..=5 {
        for i in 0..6 {
            let server = if i % 2 == 0 { &one } else { &two };
            fail(server, "shop-a", &format!("inv-{i}"), attempt).await;
        }
    }
    assert!(eventually(30, || async { receiver.got().len() >= 30 }).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, feed) = request(
        &one.base_url(),
        ADMIN_TOKEN,
        "GET",
        "/v1/tenants/shop-a/changes?limit=100",
        None,
    )
    .await;
    let expected: Vec<String> = feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        expected.len(),
        30,
        "one message per event, whichever process followed the log"
    );
    let got: Vec<String> = receiver.got().iter().map(Received::id).collect();
    assert_eq!(
        got, expected,
        "each message once, in ledger order, from two processes"
    );
    one.stop().await.unwrap();
    two.stop().await.unwrap();
}
both_backends!(
    two_processes,
    two_processes_deliver_each_message_once_in_order
);

/// The console's notification and link panels in a real headless Chromium (Debian's
/// `chromium`, driven by tests/console_browser/notify.js): an endpoint disabled for failing and
/// why, a delivery's attempts, resend, and a reconnect link made and listed. The data behind
/// them is tested on both backends above; the page on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_deliveries_attempts_and_links_in_chromium() {
    const CHROMIUM: &str = "/usr/bin/chromium";
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is needed for the console's browser tests (apt-get install chromium; .ci/run does it)"
    );
    let t = TestDb::sqlite().await;
    let s = bling_ledger::stack::StackBuilder::new(&t.url)
        .tokens(test_tokens())
        .keys(test_key_ring())
        .notify(fast(
            &[0, 100, 100, 100, 100, 100, 100, 100, 100, 100],
            Duration::from_millis(500),
        ))
        .start()
        .await
        .expect("the stack starts");
    let base = s.server.base_url();
    let receiver = Receiver::start().await;
    receiver.answer(vec![], 500);
    let (endpoint, _) = subscribe(&base, "shop-a", &receiver.url(), &["invoice.failed"]).await;
    bill(&base, "shop-a", "inv-1").await;
    fail(&s.server, "shop-a", "inv-1", 1).await;
    let one = format!("/v1/tenants/shop-a/endpoints/{endpoint}");
    assert!(
        eventually(20, || async {
            request(&base, SUPPORT_TOKEN, "GET", &one, None).await.1["enabled"] == false
        })
        .await
    );

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console_browser");
    if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .expect("npm runs");
        assert!(
            out.status.success(),
            "npm ci: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let profile = tempfile::tempdir().expect("user data dir");
    let out = tokio::task::spawn_blocking({
        let base = base.clone();
        let url = receiver.url();
        let profile = profile.path().to_path_buf();
        move || {
            Command::new("node")
                .arg("notify.js")
                .current_dir(&dir)
                .env("CONSOLE_URL", base)
                .env("SUPPORT_TOKEN", SUPPORT_TOKEN)
                .env("TENANT", "shop-a")
                .env("ENDPOINT_URL", url)
                .env("USER_DATA_DIR", profile)
                .env("CHROMIUM", CHROMIUM)
                .output()
        }
    })
    .await
    .unwrap()
    .expect("node runs notify.js");
    assert!(
        out.status.success(),
        "notify.js failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("reconnect link made and listed"),
        "{summary}"
    );
    // The resend the page asked for is in the store.
    let (_, deliveries) = request(
        &base,
        SUPPORT_TOKEN,
        "GET",
        &format!("{one}/deliveries"),
        None,
    )
    .await;
    assert_eq!(
        deliveries["deliveries"][0]["attempts"], 0,
        "resent: from the start of the schedule"
    );
    s.server.stop().await.unwrap();
    s.sandbox.shutdown().await;
}
