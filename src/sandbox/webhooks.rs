//! Webhooks, Bling → app ([DOC] developer.bling.com.br/webhooks; `docs/sandbox.md`
//! "Webhooks"). Per client app, a subscription names the server URL and the resources
//! (`order`, `invoice`, …). Whenever a resource changes on an account that has authorized the
//! app, the sandbox queues one delivery per subscribed app: the v1 envelope
//! `{eventId, date, version, event, companyId, data}`, written as PHP writes JSON, signed with
//! `X-Bling-Signature-256: sha256=<hex>` (HMAC-SHA256 of the raw body, keyed with the app's
//! client secret).
//!
//! Invariants:
//! - a delivery succeeds only on a 2xx within the subscription's timeout (Bling: 5 s);
//!   anything else is retried with doubling intervals until the retry window (Bling: 3 days)
//!   would be exceeded, and then the app's webhook for that resource is **disabled**: its
//!   queued deliveries are dropped and new events are not sent until it is re-enabled;
//! - every attempt is logged (event id, status, error, whether the signature was true);
//! - faults (per app, seeded): duplicates (the same body twice), reordering (a delivery held
//!   back so later ones overtake it), a fixed delay, and a bad signature on a first attempt.

use crate::sandbox::encoding::php_escape;
use crate::sandbox::state::{Shared, Store};
use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The resources of Bling's webhooks ([DOC] /webhooks).
pub const RESOURCES: [&str; 7] = [
    "order",
    "product",
    "stock",
    "virtual_stock",
    "product_supplier",
    "invoice",
    "consumer_invoice",
];

/// Most attempts kept in the delivery log (oldest dropped first).
const LOG_CAP: usize = 20_000;
/// Deliveries sent at the same time (a slow server does not hold back the others).
const IN_FLIGHT: usize = 32;

fn three_days_ms() -> u64 {
    3 * 24 * 3600 * 1000
}
fn one_second_ms() -> u64 {
    1000
}
fn five_seconds_ms() -> u64 {
    5000
}

/// An app's webhook settings (Bling: the "Webhooks" tab of the app).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSubscription {
    /// Where deliveries are POSTed.
    pub url: String,
    /// Subscribed resources (see [`RESOURCES`]).
    pub resources: Vec<String>,
    /// How long a delivery is retried before the resource is disabled (Bling: 3 days).
    #[serde(default = "three_days_ms")]
    pub retry_window_ms: u64,
    /// Wait before the first retry; each later one doubles it.
    #[serde(default = "one_second_ms")]
    pub first_retry_ms: u64,
    /// An answer slower than this is a failure (Bling: 5 s).
    #[serde(default = "five_seconds_ms")]
    pub timeout_ms: u64,
}

impl WebhookSubscription {
    pub fn new(url: impl Into<String>, resources: &[&str]) -> WebhookSubscription {
        WebhookSubscription {
            url: url.into(),
            resources: resources.iter().map(|r| r.to_string()).collect(),
            retry_window_ms: three_days_ms(),
            first_retry_ms: one_second_ms(),
            timeout_ms: five_seconds_ms(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err("url must be an http(s) URL".into());
        }
        if self.resources.is_empty() {
            return Err("resources must name at least one resource".into());
        }
        if let Some(r) = self
            .resources
            .iter()
            .find(|r| !RESOURCES.contains(&r.as_str()))
        {
            return Err(format!(
                "unknown resource {r:?} (one of {})",
                RESOURCES.join(", ")
            ));
        }
        if self.timeout_ms == 0 || self.first_retry_ms == 0 {
            return Err("timeout_ms and first_retry_ms must be positive".into());
        }
        Ok(())
    }
}

/// Faults injected into an app's deliveries, drawn from a generator seeded per app.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookFaults {
    /// Probability that a delivery is sent twice (same event id, same body).
    pub duplicate: f64,
    /// Probability that a delivery is held back by `reorder_hold_ms`, so later ones overtake it.
    pub reorder: f64,
    pub reorder_hold_ms: u64,
    /// Every delivery waits this long before its first attempt.
    pub delay_ms: u64,
    /// Probability that a delivery's first attempt carries a wrong signature (retries are
    /// signed correctly).
    pub bad_signature: f64,
    /// Seed of the generator (0: the sandbox's seed).
    pub seed: u64,
}

impl WebhookFaults {
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
            ("bad_signature", self.bad_signature),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be a probability between 0 and 1"));
            }
        }
        Ok(())
    }
}

/// One attempt to deliver, as the control plane lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub client_id: String,
    pub account: String,
    pub event_id: String,
    pub event: String,
    pub attempt: u32,
    /// The receiver's status; `None` when no answer came in time.
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Whether the signature sent was the true one.
    pub signature_valid: bool,
    pub duration_ms: u64,
    /// `delivered`, `retrying`, `disabled` (gave up, resource disabled) or `dropped` (the
    /// resource was disabled when the event happened).
    pub outcome: String,
}

struct Pending {
    client_id: String,
    account: String,
    resource: String,
    event_id: String,
    event: String,
    body: Arc<Vec<u8>>,
    due: Instant,
    first_attempt: Option<Instant>,
    attempts: u32,
    bad_signature: bool,
}

#[derive(Default)]
pub(crate) struct WebhookHub {
    subs: HashMap<String, WebhookSubscription>,
    faults: HashMap<String, WebhookFaults>,
    rngs: HashMap<String, StdRng>,
    disabled: HashSet<(String, String)>,
    queue: Vec<Pending>,
    log: Vec<DeliveryAttempt>,
    seed: u64,
}

impl WebhookHub {
    pub fn new(seed: u64) -> WebhookHub {
        WebhookHub {
            seed,
            ..WebhookHub::default()
        }
    }

    fn push_log(&mut self, a: DeliveryAttempt) {
        if self.log.len() >= LOG_CAP {
            self.log.drain(..LOG_CAP / 10);
        }
        self.log.push(a);
    }

    fn rng(&mut self, client_id: &str) -> &mut StdRng {
        let seed = self
            .faults
            .get(client_id)
            .map(|f| f.seed)
            .filter(|s| *s != 0)
            .unwrap_or(self.seed);
        let seed = client_id.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        self.rngs
            .entry(client_id.to_string())
            .or_insert_with(|| StdRng::seed_from_u64(seed))
    }

    fn next_due(&self) -> Option<Instant> {
        self.queue.iter().map(|p| p.due).min()
    }

    fn take_due(&mut self, now: Instant, max: usize) -> Vec<Pending> {
        let mut due: Vec<usize> = (0..self.queue.len())
            .filter(|&i| self.queue[i].due <= now)
            .collect();
        due.sort_by_key(|&i| self.queue[i].due);
        due.truncate(max);
        due.sort_unstable_by(|a, b| b.cmp(a));
        let mut out: Vec<Pending> = due.into_iter().map(|i| self.queue.swap_remove(i)).collect();
        out.sort_by_key(|p| p.due);
        out
    }
}

/// `sha256=<hex>` of `body` under `secret`, as Bling signs.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The v1 envelope's `date`: ISO 8601 in UTC, seconds ([DOC] example `2025-01-10T12:18:46Z`).
fn envelope_date() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Shared {
    /// Queues `resource.action` for every app authorized on `account` and subscribed to
    /// `resource`. Called by handlers with the store they hold (lock order: store, then hub).
    pub(crate) fn emit(
        &self,
        store: &Store,
        account: &str,
        resource: &str,
        action: &str,
        data: Value,
    ) {
        let apps = store.oauth.authorized_apps(account);
        if apps.is_empty() {
            return;
        }
        let Some(company) = store.accounts.get(account).map(|a| a.empresa_id.clone()) else {
            return;
        };
        let event = format!("{resource}.{action}");
        let mut hub = self.webhooks();
        let now = Instant::now();
        let mut queued = false;
        for client_id in apps {
            let Some(sub) = hub.subs.get(&client_id) else {
                continue;
            };
            if !sub.resources.iter().any(|r| r == resource) {
                continue;
            }
            let event_id = uuid::Uuid::new_v4().to_string();
            if hub
                .disabled
                .contains(&(client_id.clone(), resource.to_string()))
            {
                hub.push_log(DeliveryAttempt {
                    client_id: client_id.clone(),
                    account: account.to_string(),
                    event_id,
                    event: event.clone(),
                    attempt: 0,
                    status: None,
                    error: Some("the app's webhook for this resource is disabled".into()),
                    signature_valid: true,
                    duration_ms: 0,
                    outcome: "dropped".into(),
                });
                continue;
            }
            let envelope = json!({
                "eventId": event_id,
                "date": envelope_date(),
                "version": "v1",
                "event": event,
                "companyId": company,
                "data": data,
            });
            let body = Arc::new(php_escape(&envelope.to_string()).into_bytes());
            let faults = hub.faults.get(&client_id).cloned().unwrap_or_default();
            let (u_dup, u_reorder, u_sig): (f64, f64, f64) = {
                let rng = hub.rng(&client_id);
                (rng.random(), rng.random(), rng.random())
            };
            let mut due = now + Duration::from_millis(faults.delay_ms);
            if u_reorder < faults.reorder {
                due += Duration::from_millis(faults.reorder_hold_ms);
            }
            let pending = |due: Instant, bad: bool| Pending {
                client_id: client_id.clone(),
                account: account.to_string(),
                resource: resource.to_string(),
                event_id: event_id.clone(),
                event: event.clone(),
                body: body.clone(),
                due,
                first_attempt: None,
                attempts: 0,
                bad_signature: bad,
            };
            hub.queue.push(pending(due, u_sig < faults.bad_signature));
            if u_dup < faults.duplicate {
                hub.queue
                    .push(pending(due + Duration::from_millis(5), false));
            }
            queued = true;
        }
        drop(hub);
        if queued {
            self.webhook_wake.notify_one();
        }
    }

    pub(crate) fn set_webhook(&self, client_id: &str, sub: Option<WebhookSubscription>) {
        let mut hub = self.webhooks();
        match sub {
            Some(s) => {
                hub.subs.insert(client_id.to_string(), s);
            }
            None => {
                hub.subs.remove(client_id);
                hub.queue.retain(|p| p.client_id != client_id);
            }
        }
    }

    pub(crate) fn webhook(&self, client_id: &str) -> Option<WebhookSubscription> {
        self.webhooks().subs.get(client_id).cloned()
    }

    pub(crate) fn set_webhook_faults(&self, client_id: &str, faults: WebhookFaults) {
        let mut hub = self.webhooks();
        hub.faults.insert(client_id.to_string(), faults);
        hub.rngs.remove(client_id);
    }

    /// Resources of the app's webhook disabled after exhausted retries.
    pub(crate) fn disabled_resources(&self, client_id: &str) -> Vec<String> {
        let hub = self.webhooks();
        let mut out: Vec<String> = hub
            .disabled
            .iter()
            .filter(|(c, _)| c == client_id)
            .map(|(_, r)| r.clone())
            .collect();
        out.sort();
        out
    }

    /// Re-enables a disabled resource ("by hand in the app's settings"); false if it was not.
    pub(crate) fn enable_webhook_resource(&self, client_id: &str, resource: &str) -> bool {
        self.webhooks()
            .disabled
            .remove(&(client_id.to_string(), resource.to_string()))
    }

    pub(crate) fn webhook_attempts(&self, client_id: Option<&str>) -> Vec<DeliveryAttempt> {
        self.webhooks()
            .log
            .iter()
            .filter(|a| client_id.is_none_or(|c| a.client_id == c))
            .cloned()
            .collect()
    }

    /// Deliveries waiting for their (next) attempt.
    pub(crate) fn webhooks_queued(&self) -> usize {
        self.webhooks().queue.len()
    }

    fn client_secret(&self, client_id: &str) -> Option<String> {
        self.config
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
            .map(|c| c.client_secret.clone())
    }

    /// Records an attempt's result: delivered, or scheduled again, or — once the next retry
    /// would fall outside the window — the resource disabled for the app.
    fn settle(&self, mut p: Pending, status: Option<u16>, error: Option<String>, took: Duration) {
        let mut hub = self.webhooks();
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        let first = *p.first_attempt.get_or_insert_with(Instant::now);
        let sub = hub.subs.get(&p.client_id).cloned();
        let mut attempt = DeliveryAttempt {
            client_id: p.client_id.clone(),
            account: p.account.clone(),
            event_id: p.event_id.clone(),
            event: p.event.clone(),
            attempt: p.attempts,
            status,
            error,
            signature_valid: !p.bad_signature,
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            outcome: "delivered".into(),
        };
        if ok {
            hub.push_log(attempt);
            return;
        }
        let Some(sub) = sub else {
            attempt.outcome = "dropped".into();
            hub.push_log(attempt);
            return;
        };
        let wait = sub
            .first_retry_ms
            .saturating_mul(1u64 << (p.attempts.saturating_sub(1)).min(40));
        let elapsed = first.elapsed();
        if elapsed + Duration::from_millis(wait) > Duration::from_millis(sub.retry_window_ms) {
            attempt.outcome = "disabled".into();
            hub.push_log(attempt);
            let key = (p.client_id.clone(), p.resource.clone());
            hub.queue
                .retain(|q| !(q.client_id == key.0 && q.resource == key.1));
            tracing::warn!(client_id = %key.0, resource = %key.1, "sandbox webhook disabled after exhausted retries");
            hub.disabled.insert(key);
            return;
        }
        attempt.outcome = "retrying".into();
        hub.push_log(attempt);
        p.due = Instant::now() + Duration::from_millis(wait);
        p.bad_signature = false;
        hub.queue.push(p);
        drop(hub);
        self.webhook_wake.notify_one();
    }
}

/// Sends due deliveries until `stop` fires.
pub(crate) async fn run(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let http = match reqwest::Client::builder().build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "sandbox webhooks: no HTTP client");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    loop {
        if *stop.borrow() {
            return;
        }
        let now = Instant::now();
        let (due, next) = {
            let mut hub = shared.webhooks();
            let free = slots.available_permits();
            let due = hub.take_due(now, free);
            (due, hub.next_due())
        };
        for p in due {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let shared = shared.clone();
            let http = http.clone();
            tokio::spawn(async move {
                deliver(&shared, &http, p).await;
                drop(permit);
            });
        }
        let wait = next
            .map(|n| n.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(1));
        let wake = shared.webhook_wake.clone();
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn deliver(shared: &Arc<Shared>, http: &reqwest::Client, mut p: Pending) {
    p.attempts += 1;
    let Some(sub) = shared.webhook(&p.client_id) else {
        shared.settle(p, None, Some("no subscription".into()), Duration::ZERO);
        return;
    };
    let secret = shared.client_secret(&p.client_id).unwrap_or_default();
    let key = if p.bad_signature {
        format!("{secret}-not")
    } else {
        secret
    };
    let started = Instant::now();
    let sent = http
        .post(&sub.url)
        .timeout(Duration::from_millis(sub.timeout_ms))
        .header("Content-Type", "application/json")
        .header("X-Bling-Signature-256", signature(&key, &p.body))
        .body(p.body.as_ref().clone())
        .send()
        .await;
    let took = started.elapsed();
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            shared.settle(p, Some(status), None, took)
        }
        Err(e) => {
            let error = if e.is_timeout() {
                "timeout".to_string()
            } else {
                e.to_string()
            };
            shared.settle(p, None, Some(error), took)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_documentation() {
        // RFC 4231 test case 2: key "Jefe", "what do ya want for nothing?".
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_subscription_names_known_resources() {
        assert!(WebhookSubscription::new("http://x", &["order", "invoice"])
            .validate()
            .is_ok());
        assert!(WebhookSubscription::new("http://x", &["contato"])
            .validate()
            .is_err());
        assert!(WebhookSubscription::new("ftp://x", &["order"])
            .validate()
            .is_err());
    }
}
