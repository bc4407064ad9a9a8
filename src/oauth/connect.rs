//! Connecting a tenant to Bling: the authorization URL with a single-use state, and the
//! callback that exchanges the code and records `Connected` or `Reconnected`.

use std::sync::Arc;
use std::time::Duration;

use aggregates::connection::ConnectionCommand;
use aggregates::ids::TenantId;

use super::credentials::CredentialStore;
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
}

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
        creds: CredentialStore,
        ledger: Arc<Ledger>,
        state_ttl: Duration,
    ) -> Self {
        Self {
            db,
            endpoint,
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

    /// Finishes the flow Bling redirected back to. A bad, reused or expired state stores
    /// nothing and calls nobody.
    pub async fn complete(&self, code: &str, state: &str) -> Result<Connected, ConnectError> {
        let (tenant, requested_by) = states::consume(&self.db, state).await??;
        let tenant = TenantId::parse(&tenant).map_err(|e| ConnectError::Store(e.to_string()))?;
        let grant = self.endpoint.exchange_code(code).await?;
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
