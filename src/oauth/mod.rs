//! The Bling connection of each tenant: OAuth authorization, encrypted credentials, tokens
//! that renew themselves, and revocation.
//!
//! - [`crypto`]: AES-256-GCM for tokens at rest, key rotation;
//! - [`endpoint`]: Bling's token endpoint through the `oauth2` crate;
//! - [`credentials`]: the credentials table with its version fence;
//! - [`states`]: single-use OAuth `state` values;
//! - [`budget`]: the fleet-wide budget of token-endpoint calls;
//! - [`tokens`]: renewal, single flight, revoked-versus-down;
//! - [`connect`]: the connect flow.

pub mod budget;
pub mod connect;
pub mod credentials;
pub mod crypto;
pub mod endpoint;
pub mod states;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use aggregates::connection::{ConnectionState, RevocationEvidence};
use aggregates::ids::TenantId;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ledger::Ledger;
use crate::store::Db;
use connect::Connector;
use credentials::CredentialStore;
use crypto::KeyRing;
use endpoint::{EndpointConfigError, OAuthSettings, TokenEndpoint};
use tokens::{RenewalPolicy, TokenManager};

/// Everything the connection needs from configuration.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub oauth: OAuthSettings,
    pub keys: KeyRing,
    pub renewal: RenewalPolicy,
    /// Bling blocks at 20 per 60 s; stay under it with room for a manual call.
    pub token_calls_per_minute: u32,
    pub state_ttl: Duration,
    /// How often the renewal loop looks for tokens to renew.
    pub renewal_interval: Duration,
}

/// The connection services of the running process.
pub struct BlingAuth {
    pub tokens: Arc<TokenManager>,
    pub connector: Connector,
    pub settings: AuthSettings,
}

impl BlingAuth {
    pub fn new(
        db: Db,
        ledger: Arc<Ledger>,
        settings: AuthSettings,
    ) -> Result<Self, EndpointConfigError> {
        let endpoint = TokenEndpoint::new(&settings.oauth)?;
        let creds = CredentialStore::new(db.clone(), settings.keys.clone());
        let tokens = Arc::new(TokenManager::new(
            db.clone(),
            creds.clone(),
            endpoint.clone(),
            Arc::clone(&ledger),
            settings.token_calls_per_minute,
            settings.renewal.clone(),
        ));
        let connector = Connector::new(
            db,
            endpoint,
            tokens.shared_budget(),
            creds,
            ledger,
            settings.state_ttl,
        );
        Ok(Self {
            tokens,
            connector,
            settings,
        })
    }
}

/// A tenant's connection as support sees it. Never holds a token.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionStatus {
    pub tenant: TenantId,
    pub state: &'static str,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub expires_in_seconds: Option<i64>,
    pub token_fingerprint: Option<String>,
    pub scope: Option<String>,
    pub connected_at: Option<DateTime<Utc>>,
    pub last_refresh_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub revoked: Option<RevocationEvidence>,
    /// Why the last authorization attempt failed (Bling's `error` on the consent redirect, or
    /// its refusal of the code), until an authorization succeeds.
    pub last_authorization_failure: Option<RevocationEvidence>,
    /// While Bling says the account's requests for the day are spent: when calls resume
    /// (midnight in Brasília).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_quota_exhausted_until: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Credentials(#[from] credentials::CredentialError),
}

/// Builds a tenant's status from its connection events and its credentials row.
pub async fn connection_status(
    ledger: &Ledger,
    creds: Option<&CredentialStore>,
    tenant: &TenantId,
) -> Result<ConnectionStatus, StatusError> {
    let connection = ledger.connection(tenant).await?;
    let stored = match creds {
        Some(c) => c.load(tenant.as_str()).await?,
        None => None,
    };
    let expires = connection.access_expires_at;
    Ok(ConnectionStatus {
        tenant: tenant.clone(),
        state: connection.state.as_str(),
        access_expires_at: expires,
        expires_in_seconds: match connection.state {
            ConnectionState::Connected => expires.map(|e| (e - Utc::now()).num_seconds()),
            _ => None,
        },
        token_fingerprint: connection.token_fingerprint,
        scope: stored.as_ref().map(|c| c.scope.clone()),
        connected_at: stored.as_ref().map(|c| c.connected_at),
        last_refresh_at: stored.as_ref().and_then(|c| c.last_refresh_at),
        last_error: stored.as_ref().and_then(|c| c.last_error.clone()),
        last_error_at: stored.as_ref().and_then(|c| c.last_error_at),
        revoked: connection.revoked,
        last_authorization_failure: connection.last_authorization_failure,
        daily_quota_exhausted_until: connection
            .daily_quota_exhausted_until
            .filter(|until| *until > Utc::now()),
    })
}

/// The Bling client asks the token manager for tokens through this trait.
#[async_trait::async_trait]
impl crate::bling::AccessTokens for TokenManager {
    async fn access_token(&self, tenant: &TenantId) -> Result<String, crate::bling::AuthFailure> {
        TokenManager::access_token(self, tenant)
            .await
            .map(|s| s.expose().to_string())
            .map_err(auth_failure)
    }

    async fn renew_after_unauthorized(
        &self,
        tenant: &TenantId,
        refused: &str,
    ) -> Result<String, crate::bling::AuthFailure> {
        TokenManager::renew_after_unauthorized(self, tenant, refused)
            .await
            .map(|s| s.expose().to_string())
            .map_err(auth_failure)
    }

    async fn report_revoked(&self, tenant: &TenantId, evidence: RevocationEvidence) {
        TokenManager::report_revoked(self, tenant, evidence).await
    }

    fn revoked_after(&self, tenant: &TenantId, since: std::time::Instant) -> bool {
        TokenManager::revoked_after(self, tenant, since)
    }
}

fn auth_failure(e: tokens::TokenError) -> crate::bling::AuthFailure {
    match e {
        tokens::TokenError::NotConnected => crate::bling::AuthFailure::NotConnected,
        tokens::TokenError::Revoked => crate::bling::AuthFailure::Revoked,
        tokens::TokenError::Transient(m) => crate::bling::AuthFailure::Transient(m),
        e @ tokens::TokenError::BudgetExhausted { .. } => {
            crate::bling::AuthFailure::Transient(e.to_string())
        }
    }
}
