//! Telling the pet-shop system: outbound notifications signed the Standard Webhooks way, the
//! change feed they also form, and the shops' self-service reconnect links.
//!
//! - [`types`]: the notification types and which ledger events make them (pure);
//! - [`outbox`]: the log follower that writes messages and deliveries with its checkpoint;
//! - [`delivery`]: the worker that sends them, signed ([`signing`]), retried on a
//!   [`schedule`], every attempt kept;
//! - [`reconnect`]: signed, single-use, expiring links to Bling's consent.
//!
//! The change feed (`GET /v1/tenants/{tenant}/changes`) reads the same outbox by position:
//! the same payloads, in ledger order, resumable from any cursor.

pub mod delivery;
pub mod outbox;
pub mod reconnect;
pub mod schedule;
pub mod signing;
pub mod types;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::store::Db;
pub use delivery::{Deliverer, DeliverySettings};
pub use reconnect::ReconnectLinks;

/// Everything the notifier needs from configuration.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    pub delivery: DeliverySettings,
    /// How often the follower looks at the log when nothing wakes it.
    pub poll_interval: Duration,
    /// Events read per batch.
    pub batch: i64,
    /// Lifetime of a reconnect link (7 days).
    pub link_lifetime: Duration,
    /// The ledger's address as a shop owner's browser reaches it, for reconnect links
    /// (default: the address it listens on).
    pub public_url: Option<String>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            delivery: DeliverySettings::default(),
            poll_interval: Duration::from_millis(100),
            batch: 1_000,
            link_lifetime: reconnect::DEFAULT_LIFETIME,
            public_url: None,
        }
    }
}

/// The running notifier: follower, delivery worker, and the signal the change feed waits on.
pub struct Notifier {
    db: Db,
    settings: NotifySettings,
    links: Option<ReconnectLinks>,
    pub deliverer: Arc<Deliverer>,
    wake: Notify,
    written: Notify,
}

impl Notifier {
    pub fn new(
        db: Db,
        settings: NotifySettings,
        links: Option<ReconnectLinks>,
    ) -> Result<Arc<Self>, reqwest::Error> {
        let deliverer = Deliverer::new(db.clone(), settings.delivery.clone())?;
        Ok(Arc::new(Self {
            db,
            settings,
            links,
            deliverer,
            wake: Notify::new(),
            written: Notify::new(),
        }))
    }

    /// The reconnect links, when a Bling app (and so a signing key) is configured.
    pub fn links(&self) -> Option<&ReconnectLinks> {
        self.links.as_ref()
    }

    /// Asks the follower to look at the log now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Waits until the follower writes messages, or `at_most`.
    pub async fn written(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.written.notified()).await;
    }

    /// Runs the follower until the log's head is reached; returns the messages written.
    pub async fn catch_up(&self) -> Result<usize, crate::store::StoreError> {
        let mut messages = 0;
        loop {
            let done = outbox::follow(&self.db, self.links.as_ref(), self.settings.batch).await?;
            messages += done.messages;
            if done.messages > 0 {
                self.written.notify_waiters();
                self.deliverer.wake();
            }
            if done.events == 0 {
                return Ok(messages);
            }
        }
    }

    pub fn spawn(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let delivery = Arc::clone(&self.deliverer).spawn(stop.clone());
        let follower = tokio::spawn(async move {
            loop {
                if let Err(error) = self.catch_up().await {
                    tracing::error!(%error, "notifier batch failed; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = self.wake.notified() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
        vec![follower, delivery]
    }
}
