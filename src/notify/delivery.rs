//! The delivery worker: sends each endpoint its pending messages, signed (Standard Webhooks),
//! one at a time in ledger order, and records every attempt.
//!
//! # Invariants
//! - Per endpoint, messages go in ledger order: only the oldest pending delivery is attempted,
//!   so a receiver that is down holds its own queue back until it answers 2xx or the message
//!   runs out of attempts (then it is marked `failed`, kept, and can be resent).
//! - Endpoints are served by separate tasks: one tenant's slow or dead receiver never delays
//!   another's (nor another endpoint of the same tenant).
//! - At least once: attempts are recorded after the receiver answered (a run of successes
//!   together, a failure at once; on PostgreSQL without waiting for the disk), so a crash
//!   before that sends those messages again, with the same `webhook-id`.
//! - An endpoint whose attempts have all failed for `disable_after` (5 days) is disabled, with
//!   the reason and time on the endpoint; its deliveries wait until it is enabled again.
//! - Several processes may deliver: a worker first claims the due head of an endpoint's queue
//!   (moves those deliveries' due time past their timeouts), so only it sends them, and the
//!   endpoint's later messages are not due before them. A process that dies holding a claim
//!   leaves it to expire, and the messages are sent again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use super::schedule::{parse_retry_after, RetrySchedule};
use super::signing;
use crate::store::notify::{self, AfterAttempt, AttemptRow, DueDelivery, EndpointRow};
use crate::store::{now_ms, Db, StoreError};

/// How the worker delivers.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub schedule: RetrySchedule,
    /// How long an endpoint may fail continuously before it is disabled (5 days).
    pub disable_after: Duration,
    /// How long to wait for a receiver's answer.
    pub timeout: Duration,
    /// How often to look for due deliveries when nothing wakes the worker.
    pub poll_interval: Duration,
    /// Endpoints served at once.
    pub max_concurrent: usize,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            schedule: RetrySchedule::default(),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            timeout: Duration::from_secs(15),
            poll_interval: Duration::from_millis(250),
            max_concurrent: 64,
        }
    }
}

/// Pending deliveries of one endpoint read, claimed and recorded at a time (sent one by one,
/// in order). A process that dies holding a claim delays that endpoint by at most this many
/// timeouts.
const HEADS: i64 = 20;

/// How often a busy endpoint's settings are read again.
const REREAD: Duration = Duration::from_secs(1);

/// How much longer than the receiver's timeout a claimed attempt stays claimed.
const CLAIM_MARGIN_MS: i64 = 5_000;

/// The most of a receiver's answer kept with an attempt.
const EXCERPT_BYTES: usize = 512;

pub struct Deliverer {
    db: Db,
    http: reqwest::Client,
    settings: DeliverySettings,
    running: Mutex<HashSet<String>>,
    permits: Arc<Semaphore>,
    wake: Notify,
}

impl Deliverer {
    pub fn new(db: Db, settings: DeliverySettings) -> Result<Arc<Self>, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("bling-ledger-notify/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(Self {
            db,
            http,
            permits: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            settings,
            running: Mutex::new(HashSet::new()),
            wake: Notify::new(),
        }))
    }

    /// Asks the worker to look now (new messages were written, or a resend).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn spawn(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(error) = Arc::clone(&self).dispatch().await {
                    tracing::error!(%error, "notification dispatch failed; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = self.wake.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    }

    /// Starts a task for every endpoint whose next delivery is due and that has none running.
    async fn dispatch(self: Arc<Self>) -> Result<(), StoreError> {
        let now = now_ms();
        for (endpoint, due_ms) in notify::endpoints_with_work(&self.db).await? {
            if due_ms > now {
                continue;
            }
            {
                let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                if !running.insert(endpoint.clone()) {
                    continue;
                }
            }
            let me = Arc::clone(&self);
            tokio::spawn(async move {
                let permit = Arc::clone(&me.permits).acquire_owned().await;
                if permit.is_ok() {
                    if let Err(error) = me.serve(&endpoint).await {
                        tracing::error!(%error, endpoint, "notification delivery failed; retrying");
                    }
                }
                me.running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&endpoint);
                // More may have become due while this endpoint was busy.
                me.wake();
            });
        }
        Ok(())
    }

    /// Sends an endpoint's due messages in order, until none is due or one fails. The
    /// endpoint is read again every [`REREAD`] (an admin may disable it or change its URL).
    async fn serve(&self, endpoint_id: &str) -> Result<(), StoreError> {
        let mut read_at = Instant::now();
        let Some(mut endpoint) = notify::endpoint_by_id(&self.db, endpoint_id).await? else {
            return Ok(());
        };
        loop {
            if read_at.elapsed() > REREAD {
                let Some(fresh) = notify::endpoint_by_id(&self.db, endpoint_id).await? else {
                    return Ok(());
                };
                endpoint = fresh;
                read_at = Instant::now();
            }
            if endpoint.enabled != 1 {
                return Ok(());
            }
            let batch = notify::heads(&self.db, endpoint_id, HEADS).await?;
            if batch.is_empty() {
                return Ok(());
            }
            // The due prefix of the queue, claimed at once.
            let now = now_ms();
            let due: Vec<&DueDelivery> = batch
                .iter()
                .take_while(|d| d.next_attempt_ms <= now)
                .collect();
            let (Some(first), Some(last)) = (due.first(), due.last()) else {
                return Ok(());
            };
            let (first, last) = (first.position, last.position);
            // Another process serving the same endpoint finds them not due, so the order holds
            // with several replicas too. The claim outlasts every one of them timing out.
            let until =
                now + self.settings.timeout.as_millis() as i64 * due.len() as i64 + CLAIM_MARGIN_MS;
            let claimed = notify::claim(&self.db, endpoint_id, first, last, now, until).await?;
            // Successes are recorded together after the run (or before a failure), so a run
            // costs two statements rather than one per message; a crash before that re-sends
            // them, with the same ids.
            let mut delivered = Vec::new();
            for d in due {
                if !claimed.contains(&d.position) {
                    // Someone else holds it: give ours back and leave the queue to them.
                    self.flush(&mut endpoint, &mut delivered).await?;
                    notify::release(&self.db, endpoint_id, d.position, last, until, now_ms())
                        .await?;
                    return Ok(());
                }
                let sent = self.send_once(&endpoint.url, &endpoint.secret, d).await;
                if sent.ok() {
                    delivered.push(sent.row(d));
                    continue;
                }
                self.flush(&mut endpoint, &mut delivered).await?;
                self.failed(sent, d).await?;
                notify::release(&self.db, endpoint_id, d.position, last, until, now_ms()).await?;
                return Ok(());
            }
            self.flush(&mut endpoint, &mut delivered).await?;
        }
    }

    /// Records the run's successes; a success ends the endpoint's failure streak.
    async fn flush(
        &self,
        endpoint: &mut EndpointRow,
        delivered: &mut Vec<AttemptRow>,
    ) -> Result<(), StoreError> {
        if delivered.is_empty() {
            return Ok(());
        }
        notify::record_delivered(&self.db, &endpoint.tenant, delivered).await?;
        delivered.clear();
        if endpoint.failing_since_ms.take().is_some() {
            notify::endpoint_succeeded(&self.db, &endpoint.id).await?;
        }
        Ok(())
    }

    /// One attempt, not yet recorded.
    async fn send_once(&self, url: &str, secret: &str, due: &DueDelivery) -> Attempt {
        let at = chrono::Utc::now();
        let started = Instant::now();
        let outcome = match signing::secret_key(secret) {
            Ok(key) => self.send(url, &key, due).await,
            Err(e) => Sent::NoAnswer(format!("endpoint secret unusable: {e}")),
        };
        Attempt {
            at,
            latency_ms: started.elapsed().as_millis() as i64,
            outcome,
        }
    }

    /// Records a failed attempt: when to try again (or give up), the endpoint's failure
    /// streak, and disables an endpoint failing for too long.
    async fn failed(&self, attempt: Attempt, due: &DueDelivery) -> Result<(), StoreError> {
        let row = attempt.row(due);
        let wish = match &attempt.outcome {
            Sent::Answered {
                status: 429 | 503,
                retry_after,
                ..
            } => *retry_after,
            _ => None,
        };
        let after = match self
            .settings
            .schedule
            .next_delay(row.attempt as usize, wish)
        {
            Some(delay) => AfterAttempt::RetryAt(row.at_ms + delay.as_millis() as i64),
            None => AfterAttempt::GaveUp,
        };
        notify::record_attempt(&self.db, &due.tenant, &row, after).await?;
        notify::endpoint_failed(&self.db, &due.endpoint_id, row.at_ms).await?;
        let now = now_ms();
        let horizon = now - self.settings.disable_after.as_millis() as i64;
        let reason = format!(
            "every delivery attempt failed for {} (last: {})",
            human(self.settings.disable_after),
            match (row.status, &row.error) {
                (Some(s), _) => format!("HTTP {s}"),
                (None, Some(e)) => e.clone(),
                (None, None) => "no answer".to_string(),
            }
        );
        if notify::disable_if_failing_since(&self.db, &due.endpoint_id, horizon, now, &reason)
            .await?
        {
            tracing::warn!(endpoint = due.endpoint_id, tenant = due.tenant, %reason, "endpoint disabled");
        }
        Ok(())
    }

    async fn send(&self, url: &str, key: &[u8], due: &DueDelivery) -> Sent {
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signing::sign(key, &due.message_id, timestamp, &due.payload);
        let request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &due.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(due.payload.clone());
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Sent::NoAnswer(describe(&e)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let mut body = Vec::new();
        while body.len() < EXCERPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(EXCERPT_BYTES);
        Sent::Answered {
            status,
            excerpt: String::from_utf8_lossy(&body).into_owned(),
            retry_after,
        }
    }
}

/// One attempt's outcome, before it is recorded.
struct Attempt {
    at: chrono::DateTime<chrono::Utc>,
    latency_ms: i64,
    outcome: Sent,
}

impl Attempt {
    fn ok(&self) -> bool {
        matches!(self.outcome, Sent::Answered { status, .. } if (200..300).contains(&status))
    }

    fn row(&self, due: &DueDelivery) -> AttemptRow {
        let (status, error, excerpt) = match &self.outcome {
            Sent::Answered {
                status, excerpt, ..
            } => (Some(i64::from(*status)), None, excerpt.clone()),
            Sent::NoAnswer(error) => (None, Some(error.clone()), String::new()),
        };
        AttemptRow {
            endpoint_id: due.endpoint_id.clone(),
            message_id: due.message_id.clone(),
            attempt: due.attempts + 1,
            at_ms: self.at.timestamp_millis(),
            status,
            latency_ms: self.latency_ms,
            error,
            response_excerpt: excerpt,
        }
    }
}

enum Sent {
    Answered {
        status: u16,
        excerpt: String,
        retry_after: Option<Duration>,
    },
    NoAnswer(String),
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection refused or unreachable".to_string()
    } else {
        format!("request failed: {e}")
    }
}

fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 86_400 && secs % 86_400 == 0 {
        format!("{} days", secs / 86_400)
    } else if secs >= 3600 && secs % 3600 == 0 {
        format!("{} h", secs / 3600)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}
