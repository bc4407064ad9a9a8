//! Access tokens that renew themselves: refresh ahead of expiry, one refresh per tenant at a
//! time across every process, rotating refresh tokens written behind a version fence, and the
//! difference between "revoked" and "Bling is having a bad day".
//!
//! # Renewals at fleet scale
//! - **Only used tokens are renewed ahead.** An access token that has been used since it was
//!   issued is renewed ahead of its expiry (`refresh_ahead` plus this tenant's jitter). One
//!   nobody used is left to expire: the next call renews it on demand, and meanwhile only the
//!   refresh token is kept alive, 27 days after it was issued (3 before its 30-day end). An idle
//!   shop then costs one token call a month instead of four a day — the token budget, not the
//!   API, is what limits how many shops one egress IP carries (README, "Limits of a fleet").
//! - **Earliest deadline first.** Each connection's row says when its renewal is due and by
//!   when it must happen (the access token's expiry, or the refresh token's end); the loop asks
//!   an index for the due ones in deadline order and decrypts only those.
//! - **One budget for the fleet**, with a reserve for code exchanges (`budget`). When it is
//!   spent the pass stops (the rest stay due, in deadline order) and resumes when the window
//!   frees a call; the wait is recorded once per tenant (`RefreshDeferred`), not on every pass.
//! - **A lost rotation is not a revocation.** A refresh that was sent and got no answer may have
//!   rotated the refresh token; if the next refresh is refused with `invalid_grant`, the chain
//!   broke on our side of the wire: `RotationLost`, "the renewal's answer was lost; reconnect".

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aggregates::connection::{ConnectionCommand, RevocationEvidence};
use aggregates::ids::TenantId;
use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::budget::{Purpose, TokenBudget};
use super::credentials::{CredentialError, CredentialStatus, CredentialStore, Credentials};
use super::crypto::Secret;
use super::endpoint::{GrantError, TokenEndpoint};
use crate::ledger::{Actor, CommandContext, Ledger};
use crate::store::{connections, Db};

/// When to renew.
#[derive(Debug, Clone)]
pub struct RenewalPolicy {
    /// Renew this long before the access token expires (Bling's tokens live 6 h).
    pub refresh_ahead: Duration,
    /// Up to this much more, spread per tenant, so a fleet of tenants connected together does
    /// not renew together.
    pub jitter: Duration,
    /// How long a caller may wait for the token-endpoint budget before giving up for now.
    pub budget_wait: Duration,
    /// Delay before the next renewal attempt after a transient failure.
    pub retry_after_failure: Duration,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self {
            refresh_ahead: Duration::from_secs(30 * 60),
            jitter: Duration::from_secs(10 * 60),
            budget_wait: Duration::from_secs(5),
            retry_after_failure: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the tenant is not connected to Bling")]
    NotConnected,
    #[error("the shop revoked Bling access; reconnect")]
    Revoked,
    #[error("token renewal failed for now: {0}")]
    Transient(String),
    /// The fleet's token budget has no call free for a renewal for `wait` more.
    #[error("token renewal waits for the token budget ({} ms)", wait.as_millis())]
    BudgetExhausted { wait: Duration },
}

impl From<CredentialError> for TokenError {
    fn from(e: CredentialError) -> Self {
        TokenError::Transient(e.to_string())
    }
}

impl From<crate::store::StoreError> for TokenError {
    fn from(e: crate::store::StoreError) -> Self {
        TokenError::Transient(e.to_string())
    }
}

const REFRESH_LOCK_PREFIX: &str = "bling-ledger:refresh:";

const BUDGET_EXHAUSTED: &str =
    "token-endpoint budget exhausted for now (Bling blocks an IP after 20 calls/min)";

/// Due renewals looked at per pass of the renewal loop.
const RENEWALS_PER_PASS: i64 = 500;

/// The renewals the fleet needs against what the token budget gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalDemand {
    /// Renewals due now (waiting).
    pub due_now: i64,
    /// Renewals due within the next hour, those due now included.
    pub due_next_hour: i64,
    /// Renewals the budget allows in an hour (the code-exchange reserve left out).
    pub renewals_per_hour: i64,
}

impl RenewalDemand {
    /// Reads the demand from the credentials' renewal schedule (two indexed counts).
    pub async fn measure(
        creds: &CredentialStore,
        budget: &TokenBudget,
    ) -> Result<RenewalDemand, CredentialError> {
        let now = Utc::now();
        Ok(RenewalDemand {
            due_now: creds.renewals_due_before(now).await?,
            due_next_hour: creds
                .renewals_due_before(now + chrono::Duration::hours(1))
                .await?,
            renewals_per_hour: budget.renewals_per_minute() * 60,
        })
    }

    /// Whether the fleet needs more renewals than one egress IP's budget gives.
    pub fn exceeds_budget(&self) -> bool {
        self.due_next_hour > self.renewals_per_hour
    }
}

pub struct TokenManager {
    db: Db,
    creds: CredentialStore,
    endpoint: TokenEndpoint,
    ledger: Arc<Ledger>,
    budget: Arc<TokenBudget>,
    policy: RenewalPolicy,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    token_calls: AtomicU64,
    /// When this process last recorded each tenant's revocation: calls holding a token taken
    /// before it must not leave (see [`crate::bling::AccessTokens::revoked_after`]).
    revocations: Mutex<HashMap<String, std::time::Instant>>,
    /// Tenants whose renewal waits for the token budget, already recorded as deferred: the
    /// wait is recorded once, not on every pass.
    waiting_for_budget: Mutex<std::collections::HashSet<String>>,
}

fn check_status(creds: &Credentials) -> Result<(), TokenError> {
    match creds.status {
        CredentialStatus::Active => Ok(()),
        CredentialStatus::Revoked => Err(TokenError::Revoked),
        CredentialStatus::Disconnected => Err(TokenError::NotConnected),
    }
}

impl TokenManager {
    pub fn new(
        db: Db,
        creds: CredentialStore,
        endpoint: TokenEndpoint,
        ledger: Arc<Ledger>,
        token_calls_per_minute: u32,
        policy: RenewalPolicy,
    ) -> Self {
        Self {
            budget: Arc::new(TokenBudget::new(db.clone(), token_calls_per_minute)),
            db,
            creds,
            endpoint,
            ledger,
            policy,
            flights: Mutex::new(HashMap::new()),
            token_calls: AtomicU64::new(0),
            revocations: Mutex::new(HashMap::new()),
            waiting_for_budget: Mutex::new(std::collections::HashSet::new()),
        }
    }

    pub fn credentials(&self) -> &CredentialStore {
        &self.creds
    }

    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    /// The fleet's token-endpoint budget (for metrics).
    pub fn budget(&self) -> &TokenBudget {
        &self.budget
    }

    /// The budget, for the other token calls of the fleet (code exchanges).
    pub fn shared_budget(&self) -> Arc<TokenBudget> {
        Arc::clone(&self.budget)
    }

    /// Token-endpoint calls this process made.
    pub fn token_calls(&self) -> u64 {
        self.token_calls.load(Ordering::Relaxed)
    }

    fn context(tenant: &TenantId) -> CommandContext {
        CommandContext::new(tenant.clone(), "token-renewal", Actor::System)
    }

    /// How long before the access token's expiry this tenant renews it (`refresh_ahead` and
    /// this tenant's share of jitter).
    fn window(&self, tenant: &TenantId, creds: &Credentials) -> chrono::Duration {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (tenant.as_str(), creds.version).hash(&mut hasher);
        let spread = self.policy.jitter.as_millis() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            hasher.finish() % spread
        };
        let window = self.policy.refresh_ahead + Duration::from_millis(jitter);
        chrono::Duration::from_std(window).unwrap_or(chrono::Duration::zero())
    }

    /// Whether the token is inside its renewal window.
    fn due(&self, tenant: &TenantId, creds: &Credentials) -> bool {
        Utc::now() + self.window(tenant, creds) >= creds.access_expires_at
    }

    /// A valid access token, renewed first when it is close to expiry.
    pub async fn access_token(&self, tenant: &TenantId) -> Result<Secret, TokenError> {
        let creds = self
            .creds
            .load(tenant.as_str())
            .await?
            .ok_or(TokenError::NotConnected)?;
        check_status(&creds)?;
        if !creds.used {
            // First use of this token: from now on it is renewed ahead of its expiry.
            let renew_at = creds.access_expires_at - self.window(tenant, &creds);
            if let Err(error) = self
                .creds
                .mark_used(tenant.as_str(), creds.version, renew_at)
                .await
            {
                tracing::warn!(%tenant, %error, "could not note the token's first use");
            }
        }
        if !self.due(tenant, &creds) {
            return Ok(creds.access);
        }
        match self.refresh(tenant, creds.version).await {
            Ok(token) => Ok(token),
            // Renewal ahead of time failed transiently: the current token still works.
            Err(TokenError::Transient(_) | TokenError::BudgetExhausted { .. })
                if creds.access_expires_at > Utc::now() =>
            {
                Ok(creds.access)
            }
            Err(e) => Err(e),
        }
    }

    /// `refused` got a 401. Renew once, unless someone already did: then use theirs.
    pub async fn renew_after_unauthorized(
        &self,
        tenant: &TenantId,
        refused: &str,
    ) -> Result<Secret, TokenError> {
        let creds = self
            .creds
            .load(tenant.as_str())
            .await?
            .ok_or(TokenError::NotConnected)?;
        check_status(&creds)?;
        if creds.access.expose() != refused {
            return Ok(creds.access);
        }
        self.refresh(tenant, creds.version).await
    }

    /// A freshly renewed token was refused too: the shop revoked access.
    pub async fn report_revoked(&self, tenant: &TenantId, evidence: RevocationEvidence) {
        self.record_revocation(tenant, evidence).await;
    }

    /// Whether this process recorded a revocation of `tenant` after `since`.
    pub fn revoked_after(&self, tenant: &TenantId, since: std::time::Instant) -> bool {
        self.revocations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant.as_str())
            .is_some_and(|at| *at >= since)
    }

    async fn record_revocation(&self, tenant: &TenantId, evidence: RevocationEvidence) {
        self.revocations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string(), std::time::Instant::now());
        let message = format!(
            "needs reconnect: {} answered {} {} ({})",
            evidence.call, evidence.status, evidence.error_type, evidence.message
        );
        if let Err(e) = self
            .creds
            .set_status(tenant.as_str(), CredentialStatus::Revoked, Some(&message))
            .await
        {
            tracing::error!(%tenant, error = %e, "could not mark credentials revoked");
        }
        let command = ConnectionCommand::RecordRevocation { evidence };
        if let Err(e) = self
            .ledger
            .execute_connection(&Self::context(tenant), command)
            .await
        {
            tracing::error!(%tenant, error = %e, "could not record the revocation");
        }
        tracing::warn!(%tenant, "Bling authorization revoked; sync parked until reconnection");
    }

    /// The refresh-token chain broke on a lost answer: park the tenant like a revocation, but
    /// say what happened (`RotationLost`), not that the shop revoked access.
    async fn record_lost_rotation(&self, tenant: &TenantId, evidence: RevocationEvidence) {
        self.revocations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string(), std::time::Instant::now());
        let message = format!(
            "needs reconnect: {}; then {} answered {} {}",
            aggregates::connection::LOST_ROTATION_REASON,
            evidence.call,
            evidence.status,
            evidence.error_type
        );
        if let Err(e) = self
            .creds
            .set_status(tenant.as_str(), CredentialStatus::Revoked, Some(&message))
            .await
        {
            tracing::error!(%tenant, error = %e, "could not mark credentials as needing a reconnect");
        }
        let command = ConnectionCommand::RecordLostRotation { evidence };
        if let Err(e) = self
            .ledger
            .execute_connection(&Self::context(tenant), command)
            .await
        {
            tracing::error!(%tenant, error = %e, "could not record the lost rotation");
        }
        tracing::warn!(%tenant, "Bling refresh-token chain broken by a lost renewal answer; sync parked until reconnection");
    }

    fn flight(&self, tenant: &TenantId) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(flights.entry(tenant.to_string()).or_default())
    }

    /// Renews the token read at `seen_version`. One renewal per tenant at a time: in this
    /// process by a mutex, across processes by a PostgreSQL advisory lock held for the call.
    /// Whoever waited behind a renewal finds a newer version and uses it without a call.
    #[tracing::instrument(name = "token_renewal", skip_all, fields(tenant = %tenant))]
    async fn refresh(&self, tenant: &TenantId, seen_version: i64) -> Result<Secret, TokenError> {
        let flight = self.flight(tenant);
        let _in_process = flight.lock().await;
        let _fleet =
            connections::lock_renewal(&self.db, &format!("{REFRESH_LOCK_PREFIX}{tenant}")).await?;
        let creds = self
            .creds
            .load(tenant.as_str())
            .await?
            .ok_or(TokenError::NotConnected)?;
        check_status(&creds)?;
        if creds.version != seen_version {
            return Ok(creds.access);
        }
        self.take_budget(tenant).await?;
        self.token_calls.fetch_add(1, Ordering::Relaxed);
        match self.endpoint.refresh(&creds.refresh).await {
            Ok(grant) => {
                self.waiting_for_budget
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(tenant.as_str());
                if self
                    .creds
                    .store_refresh(tenant.as_str(), creds.version, &grant)
                    .await?
                {
                    let command = ConnectionCommand::RecordRefresh {
                        access_expires_at: grant.access_expires_at,
                        token_fingerprint: grant.access.fingerprint(),
                    };
                    if let Err(e) = self
                        .ledger
                        .execute_connection(&Self::context(tenant), command)
                        .await
                    {
                        tracing::error!(%tenant, error = %e, "token renewed but not recorded");
                    }
                    tracing::info!(%tenant, expires_at = %grant.access_expires_at, "Bling token renewed");
                    Ok(grant.access)
                } else {
                    // A reconnection wrote newer credentials while we renewed: theirs win.
                    let latest = self
                        .creds
                        .load(tenant.as_str())
                        .await?
                        .ok_or(TokenError::NotConnected)?;
                    check_status(&latest)?;
                    Ok(latest.access)
                }
            }
            Err(GrantError::NeedsReconnect {
                status,
                error_type,
                message,
            }) => {
                // A writer outside our lock (a reconnection) may have replaced the token we
                // sent; then ours was merely stale, not revoked.
                let latest = self
                    .creds
                    .load(tenant.as_str())
                    .await?
                    .ok_or(TokenError::NotConnected)?;
                if latest.version != creds.version {
                    check_status(&latest)?;
                    return Ok(latest.access);
                }
                let evidence = RevocationEvidence {
                    call: "POST /oauth/token (grant_type=refresh_token)".into(),
                    status,
                    error_type,
                    message,
                };
                if latest.refresh_unanswered && evidence.error_type == "invalid_grant" {
                    self.record_lost_rotation(tenant, evidence).await;
                } else {
                    self.record_revocation(tenant, evidence).await;
                }
                Err(TokenError::Revoked)
            }
            Err(error @ GrantError::AnswerLost { .. }) => {
                // Bling may have rotated the refresh token we hold; if the next refresh is
                // refused, that is why.
                let message = error.to_string();
                if let Err(e) = self
                    .creds
                    .mark_refresh_unanswered(tenant.as_str(), creds.version)
                    .await
                {
                    tracing::error!(%tenant, error = %e, "could not note the lost renewal answer");
                }
                self.defer(tenant, creds.version, &message).await;
                Err(TokenError::Transient(message))
            }
            Err(error @ (GrantError::InvalidClient { .. } | GrantError::Transient { .. })) => {
                let message = error.to_string();
                self.defer(tenant, creds.version, &message).await;
                Err(TokenError::Transient(message))
            }
        }
    }

    async fn take_budget(&self, tenant: &TenantId) -> Result<(), TokenError> {
        match self
            .budget
            .take_within(tenant.as_str(), Purpose::Renewal, self.policy.budget_wait)
            .await?
        {
            Ok(()) => Ok(()),
            Err(wait) => {
                self.budget_exhausted(tenant, wait).await;
                Err(TokenError::BudgetExhausted { wait })
            }
        }
    }

    /// The budget is spent for now: record it once per tenant (until a renewal of that tenant
    /// succeeds), not on every attempt.
    async fn budget_exhausted(&self, tenant: &TenantId, wait: Duration) {
        let message = BUDGET_EXHAUSTED.to_string();
        let first = self
            .waiting_for_budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string());
        if first {
            tracing::warn!(%tenant, wait_ms = wait.as_millis() as u64, "Bling token renewal waits for the token budget");
            let _ = self.creds.record_error(tenant.as_str(), &message).await;
            self.record_deferral(tenant, &message, wait).await;
        } else {
            tracing::debug!(%tenant, "Bling token renewal still waits for the token budget");
        }
    }

    /// A renewal failed for a reason that may pass: try again after `retry_after_failure`
    /// (the loop's next look at this version is put off until then).
    async fn defer(&self, tenant: &TenantId, version: i64, message: &str) {
        tracing::warn!(%tenant, %message, "Bling token renewal deferred");
        let _ = self.creds.record_error(tenant.as_str(), message).await;
        let next = Utc::now()
            + chrono::Duration::from_std(self.policy.retry_after_failure)
                .unwrap_or(chrono::Duration::minutes(1));
        let _ = self
            .creds
            .postpone_renewal(tenant.as_str(), version, next)
            .await;
        self.record_deferral(tenant, message, self.policy.retry_after_failure)
            .await;
    }

    async fn record_deferral(&self, tenant: &TenantId, message: &str, wait: Duration) {
        let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        let command = ConnectionCommand::DeferRefresh {
            reason: message.to_string(),
            next_attempt_at: next,
        };
        if let Err(e) = self
            .ledger
            .execute_connection(&Self::context(tenant), command)
            .await
        {
            tracing::error!(%tenant, error = %e, "could not record the deferred renewal");
        }
    }

    /// Renews the connections whose renewal is due, earliest deadline first (an indexed
    /// query; only those are decrypted). Stops when the token budget is spent, leaving the rest
    /// due for the next pass. Returns how many renewed, and how long until the budget frees a
    /// call when it stopped for that.
    pub async fn renew_due(&self) -> (usize, Option<Duration>) {
        let due = match self.creds.renewals_due(RENEWALS_PER_PASS).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the renewals due");
                return (0, None);
            }
        };
        let mut renewed = 0;
        for (tenant, version, _deadline) in due {
            let Ok(tenant) = TenantId::parse(&tenant) else {
                continue;
            };
            match self.refresh(&tenant, version).await {
                Ok(_) => renewed += 1,
                Err(TokenError::BudgetExhausted { wait }) => return (renewed, Some(wait)),
                Err(_) => {}
            }
        }
        (renewed, None)
    }

    /// Renewals due now and in the next hour, against what the budget allows renewals in an
    /// hour: the fleet's demand on one egress IP's token calls.
    pub async fn renewal_demand(&self) -> Result<RenewalDemand, TokenError> {
        Ok(RenewalDemand::measure(&self.creds, &self.budget).await?)
    }

    /// Checks every `every` for tokens to renew, until `stop` turns true.
    pub fn spawn_renewal(
        self: Arc<Self>,
        every: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut warned_at: Option<tokio::time::Instant> = None;
            loop {
                let (_, budget_frees_in) = self.renew_due().await;
                if warned_at.is_none_or(|at| at.elapsed() > Duration::from_secs(600)) {
                    if let Ok(demand) = self.renewal_demand().await {
                        if demand.exceeds_budget() {
                            tracing::warn!(
                                due_next_hour = demand.due_next_hour,
                                renewals_per_hour = demand.renewals_per_hour,
                                "the fleet needs more token renewals than one egress IP's budget gives; tokens will lapse (README, Limits of a fleet)"
                            );
                            warned_at = Some(tokio::time::Instant::now());
                        }
                    }
                }
                let pause = budget_frees_in.map_or(every, |w| w.min(every));
                tokio::select! {
                    _ = tokio::time::sleep(pause.max(Duration::from_millis(50))) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    }
}
