//! Access tokens that renew themselves: refresh ahead of expiry, one refresh per tenant at a
//! time across every process, rotating refresh tokens written behind a version fence, and the
//! difference between "revoked" and "Bling is having a bad day".

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

use super::budget::TokenBudget;
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

pub struct TokenManager {
    db: Db,
    creds: CredentialStore,
    endpoint: TokenEndpoint,
    ledger: Arc<Ledger>,
    budget: TokenBudget,
    policy: RenewalPolicy,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    token_calls: AtomicU64,
    /// When this process last recorded each tenant's revocation: calls holding a token taken
    /// before it must not leave (see [`crate::bling::AccessTokens::revoked_after`]).
    revocations: Mutex<HashMap<String, std::time::Instant>>,
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
            budget: TokenBudget::new(db.clone(), token_calls_per_minute),
            db,
            creds,
            endpoint,
            ledger,
            policy,
            flights: Mutex::new(HashMap::new()),
            token_calls: AtomicU64::new(0),
            revocations: Mutex::new(HashMap::new()),
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

    /// Token-endpoint calls this process made.
    pub fn token_calls(&self) -> u64 {
        self.token_calls.load(Ordering::Relaxed)
    }

    fn context(tenant: &TenantId) -> CommandContext {
        CommandContext::new(tenant.clone(), "token-renewal", Actor::System)
    }

    /// Whether the token is inside its renewal window, with this tenant's share of jitter.
    fn due(&self, tenant: &TenantId, creds: &Credentials) -> bool {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (tenant.as_str(), creds.version).hash(&mut hasher);
        let spread = self.policy.jitter.as_millis() as u64;
        let jitter = if spread == 0 {
            0
        } else {
            hasher.finish() % spread
        };
        let window = self.policy.refresh_ahead + Duration::from_millis(jitter);
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::zero());
        Utc::now() + window >= creds.access_expires_at
    }

    /// A valid access token, renewed first when it is close to expiry.
    pub async fn access_token(&self, tenant: &TenantId) -> Result<Secret, TokenError> {
        let creds = self
            .creds
            .load(tenant.as_str())
            .await?
            .ok_or(TokenError::NotConnected)?;
        check_status(&creds)?;
        if !self.due(tenant, &creds) {
            return Ok(creds.access);
        }
        match self.refresh(tenant, creds.version).await {
            Ok(token) => Ok(token),
            // Renewal ahead of time failed transiently: the current token still works.
            Err(TokenError::Transient(_)) if creds.access_expires_at > Utc::now() => {
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
                self.record_revocation(
                    tenant,
                    RevocationEvidence {
                        call: "POST /oauth/token (grant_type=refresh_token)".into(),
                        status,
                        error_type,
                        message,
                    },
                )
                .await;
                Err(TokenError::Revoked)
            }
            Err(error @ (GrantError::InvalidClient { .. } | GrantError::Transient { .. })) => {
                let message = error.to_string();
                self.defer(tenant, &message).await;
                Err(TokenError::Transient(message))
            }
        }
    }

    async fn take_budget(&self, tenant: &TenantId) -> Result<(), TokenError> {
        match self.budget.take(tenant.as_str()).await? {
            Ok(()) => Ok(()),
            Err(wait) if wait <= self.policy.budget_wait => {
                tokio::time::sleep(wait).await;
                match self.budget.take(tenant.as_str()).await? {
                    Ok(()) => Ok(()),
                    Err(_) => Err(self.budget_exhausted(tenant).await),
                }
            }
            Err(_) => Err(self.budget_exhausted(tenant).await),
        }
    }

    async fn budget_exhausted(&self, tenant: &TenantId) -> TokenError {
        let message =
            "token-endpoint budget exhausted (Bling blocks after 20 calls/min)".to_string();
        self.defer(tenant, &message).await;
        TokenError::Transient(message)
    }

    async fn defer(&self, tenant: &TenantId, message: &str) {
        tracing::warn!(%tenant, %message, "Bling token renewal deferred");
        let _ = self.creds.record_error(tenant.as_str(), message).await;
        let next = Utc::now()
            + chrono::Duration::from_std(self.policy.retry_after_failure)
                .unwrap_or(chrono::Duration::minutes(1));
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

    /// Renews every connected tenant whose token is due, busy or idle: an idle shop's 30-day
    /// refresh token is kept alive by the same 6-hourly renewal. Returns how many renewed.
    pub async fn renew_due(&self) -> usize {
        let tenants = match self.creds.active_tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot list connected tenants");
                return 0;
            }
        };
        let mut renewed = 0;
        for (tenant, _, _) in tenants {
            let Ok(tenant) = TenantId::parse(&tenant) else {
                continue;
            };
            let Ok(Some(creds)) = self.creds.load(tenant.as_str()).await else {
                continue;
            };
            if creds.status == CredentialStatus::Active
                && self.due(&tenant, &creds)
                && self.refresh(&tenant, creds.version).await.is_ok()
            {
                renewed += 1;
            }
        }
        renewed
    }

    /// Checks every `every` for tokens to renew, until `stop` turns true.
    pub fn spawn_renewal(
        self: Arc<Self>,
        every: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                self.renew_due().await;
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    }
}
