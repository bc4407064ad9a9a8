//! Connecting a tenant to Bling: the authorization URL with a single-use state, and the
//! callback that exchanges the code and records `Connected` or `Reconnected`.

use std::sync::Arc;
use std::time::Duration;

use aggregates::connection::{ConnectionCommand, ConnectionState, RevocationEvidence};
use aggregates::ids::TenantId;

use super::budget::{Purpose, TokenBudget};
use super::credentials::{CredentialStatus, CredentialStore};
use super::endpoint::{GrantError, TokenEndpoint};
use super::states::{self, StateError};
use crate::ledger::{Actor, CommandContext, Ledger};
use crate::store::{Db, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    State(#[from] StateError),
    #[error("Bling did not accept the authorization: {0}")]
    Grant(#[from] GrantError),
    #[error("storage failed: {0}")]
    Store(String),
    /// The fleet's token budget had no call free while the code was still alive.
    #[error("too many Bling connections at once: the token budget frees a call in {} s", wait.as_secs().max(1))]
    Busy { wait: Duration },
}

/// How long a callback waits for the token budget: Bling's code lives one minute, and the shop's
/// user is watching.
pub const CODE_EXCHANGE_PATIENCE: Duration = Duration::from_secs(30);

impl From<StoreError> for ConnectError {
    fn from(e: StoreError) -> Self {
        ConnectError::Store(e.to_string())
    }
}

impl From<super::credentials::CredentialError> for ConnectError {
    fn from(e: super::credentials::CredentialError) -> Self {
        ConnectError::Store(e.to_string())
    }
}

pub struct Connector {
    db: Db,
    endpoint: TokenEndpoint,
    /// Code exchanges are token calls too: they count in the fleet's budget.
    budget: Arc<TokenBudget>,
    creds: CredentialStore,
    ledger: Arc<Ledger>,
    state_ttl: Duration,
}

/// What the callback did.
#[derive(Debug, Clone)]
pub struct Connected {
    pub tenant: TenantId,
    pub reconnected: bool,
}

impl Connector {
    pub fn new(
        db: Db,
        endpoint: TokenEndpoint,
        budget: Arc<TokenBudget>,
        creds: CredentialStore,
        ledger: Arc<Ledger>,
        state_ttl: Duration,
    ) -> Self {
        Self {
            db,
            endpoint,
            budget,
            creds,
            ledger,
            state_ttl,
        }
    }

    /// Bling's consent URL for `tenant`, and records that it was asked for.
    pub async fn start(&self, tenant: &TenantId, actor: Actor) -> Result<String, ConnectError> {
        let requested_by = actor.as_string();
        let state = states::issue(&self.db, tenant.as_str(), &requested_by, self.state_ttl).await?;
        let command = ConnectionCommand::RequestAuthorization {
            tenant: tenant.clone(),
            state_fingerprint: states::digest(&state)[..12].to_string(),
            requested_by,
        };
        let ctx = CommandContext::new(tenant.clone(), uuid::Uuid::new_v4().to_string(), actor);
        self.ledger
            .execute_connection(&ctx, command)
            .await
            .map_err(|e| ConnectError::Store(e.to_string()))?;
        Ok(self.endpoint.authorize_url(&state))
    }

    /// Bling sent the browser back with `error=…` (`access_denied`, `app_inativo`,
    /// `UNAUTHORIZED_ERROR`): spends the state and records the failure, with Bling's answer, on
    /// the tenant's connection, where support sees it. Stores no credentials and leaves an
    /// existing connection as it is. A bad, reused or expired state stores nothing.
    pub async fn refused(
        &self,
        state: &str,
        error: &str,
        description: Option<&str>,
    ) -> Result<TenantId, ConnectError> {
        let (tenant, _) = states::consume(&self.db, state).await??;
        let tenant = TenantId::parse(&tenant).map_err(|e| ConnectError::Store(e.to_string()))?;
        let evidence = RevocationEvidence {
            call: "GET /oauth/authorize (redirect back with error)".into(),
            status: 0,
            error_type: error.chars().take(100).collect(),
            message: description.unwrap_or("").chars().take(500).collect(),
        };
        self.record_failure(&tenant, state, evidence).await?;
        tracing::warn!(%tenant, error, "Bling refused the authorization");
        Ok(tenant)
    }

    async fn record_failure(
        &self,
        tenant: &TenantId,
        state: &str,
        evidence: RevocationEvidence,
    ) -> Result<(), ConnectError> {
        let ctx = CommandContext::new(
            tenant.clone(),
            format!("oauth-callback:{}", &states::digest(state)[..12]),
            Actor::System,
        );
        self.ledger
            .execute_connection(
                &ctx,
                ConnectionCommand::RecordAuthorizationFailure { evidence },
            )
            .await
            .map(|_| ())
            .map_err(|e| ConnectError::Store(e.to_string()))
    }

    /// The code exchange was refused. Recorded as an authorization failure; a reused code
    /// (`VALIDATION_ERROR`: "the user has been revoked") also kills the existing connection,
    /// which is recorded as revoked with the same evidence.
    async fn exchange_refused(&self, tenant: &TenantId, state: &str, error: &GrantError) {
        let GrantError::NeedsReconnect {
            status,
            error_type,
            message,
        } = error
        else {
            return;
        };
        let evidence = RevocationEvidence {
            call: "POST /oauth/token (grant_type=authorization_code)".into(),
            status: *status,
            error_type: error_type.clone(),
            message: message.clone(),
        };
        if let Err(e) = self.record_failure(tenant, state, evidence.clone()).await {
            tracing::error!(%tenant, error = %e, "could not record the refused authorization");
        }
        if error_type != "VALIDATION_ERROR" {
            return;
        }
        let connected = matches!(
            self.ledger.connection(tenant).await.map(|c| c.state),
            Ok(ConnectionState::Connected)
        );
        if !connected {
            return;
        }
        let note = format!(
            "needs reconnect: {} answered {} {} ({})",
            evidence.call, evidence.status, evidence.error_type, evidence.message
        );
        if let Err(e) = self
            .creds
            .set_status(tenant.as_str(), CredentialStatus::Revoked, Some(&note))
            .await
        {
            tracing::error!(%tenant, error = %e, "could not mark credentials revoked");
        }
        let ctx = CommandContext::new(tenant.clone(), "oauth-callback", Actor::System);
        if let Err(e) = self
            .ledger
            .execute_connection(&ctx, ConnectionCommand::RecordRevocation { evidence })
            .await
        {
            tracing::error!(%tenant, error = %e, "could not record the revocation");
        }
    }

    /// Finishes the flow Bling redirected back to. A bad, reused or expired state stores
    /// nothing and calls nobody.
    pub async fn complete(&self, code: &str, state: &str) -> Result<Connected, ConnectError> {
        let (tenant, requested_by) = states::consume(&self.db, state).await??;
        let tenant = TenantId::parse(&tenant).map_err(|e| ConnectError::Store(e.to_string()))?;
        if let Err(wait) = self
            .budget
            .take_within(
                tenant.as_str(),
                Purpose::CodeExchange,
                CODE_EXCHANGE_PATIENCE,
            )
            .await?
        {
            tracing::warn!(%tenant, "code exchange refused: the fleet's token budget is spent");
            return Err(ConnectError::Busy { wait });
        }
        let grant = match self.endpoint.exchange_code(code).await {
            Ok(grant) => grant,
            Err(e) => {
                self.exchange_refused(&tenant, state, &e).await;
                return Err(e.into());
            }
        };
        let before = self
            .ledger
            .connection(&tenant)
            .await
            .map_err(|e| ConnectError::Store(e.to_string()))?;
        let reconnected = before.token_fingerprint.is_some();
        self.creds
            .store_authorization(tenant.as_str(), &grant)
            .await?;
        let command = ConnectionCommand::CompleteAuthorization {
            tenant: tenant.clone(),
            scopes: grant.scope.clone(),
            access_expires_at: grant.access_expires_at,
            token_fingerprint: grant.access.fingerprint(),
        };
        let actor = if requested_by.starts_with("support:") {
            Actor::Support(requested_by.trim_start_matches("support:").to_string())
        } else {
            Actor::System
        };
        let ctx = CommandContext::new(
            tenant.clone(),
            format!("oauth-callback:{}", &states::digest(state)[..12]),
            actor,
        );
        self.ledger
            .execute_connection(&ctx, command)
            .await
            .map_err(|e| ConnectError::Store(e.to_string()))?;
        tracing::info!(%tenant, reconnected, "connected to Bling");
        Ok(Connected {
            tenant,
            reconnected,
        })
    }
}
