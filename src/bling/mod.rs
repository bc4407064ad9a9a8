//! The typed Bling API v3 client: models with Bling's own (Portuguese) field names, error
//! classification into the domain's failure causes, per-account rate limiting and daily budget,
//! retries with backoff, OAuth token handling through [`AccessTokens`], and a record of every
//! HTTP attempt ([`aggregates::sync::BlingCall`]) returned with every result.
//!
//! ```no_run
//! # async fn demo(tokens: std::sync::Arc<dyn bling_ledger::bling::AccessTokens>) {
//! use bling_ledger::bling::{BlingClient, ClientConfig};
//! use aggregates::ids::TenantId;
//! let client = BlingClient::new("https://api.bling.com.br/Api/v3", tokens, ClientConfig::default())
//!     .expect("valid base URL");
//! let tenant = TenantId::parse("shop-1").unwrap();
//! let outcome = client.find_contatos_by_documento(&tenant, "12345678909").await;
//! // Store `outcome.calls` in the sync event, whatever the result.
//! match outcome.result {
//!     Ok(found) => println!("{} contato(s)", found.len()),
//!     Err(e) => println!("{e}: {:?}", e.to_failure_cause(bling_ledger::bling::Operation::Contato)),
//! }
//! # }
//! ```
//!
//! - [`client`]: [`BlingClient`], one method per Bling endpoint we use;
//! - [`models`]: request and response bodies; money is [`aggregates::money::Centavos`] in Rust
//!   and reais on the wire;
//! - [`error`]: [`BlingError`], [`BlingErrorBody`];
//! - [`limiter`]: 3 req/s and 120,000 req/day per Bling account;
//! - [`gate`]: the caller's last word before each call leaves (a sync job's lease), and a
//!   request's own check ([`StillWanted`]: an NF-e's invoice not cancelled meanwhile);
//! - [`retry`]: [`RetryPolicy`], and which calls may be replayed.

pub mod client;
pub mod error;
pub mod gate;
pub mod limiter;
pub mod models;
pub mod retry;
pub mod webhooks;

pub use client::{BlingClient, CallOutcome, ClientBuildError, ClientConfig, Page};
pub use error::{BlingError, BlingErrorBody, BlingErrorField, BlingErrorItem, Operation};
pub use gate::StillWanted;
pub use limiter::{DailyBudget, TenantLimiter};
pub use models::*;
pub use retry::RetryPolicy;

use aggregates::connection::RevocationEvidence;
use aggregates::ids::TenantId;

/// Where the client gets access tokens: the OAuth module implements it over the encrypted
/// credentials table (renewal fenced per tenant, see `docs/design.md`, "OAuth and the connection").
///
/// The client's flow on every call: [`access_token`](AccessTokens::access_token) → send → on a
/// 401, [`renew_after_unauthorized`](AccessTokens::renew_after_unauthorized) with the refused
/// token → resend once → if that is refused too,
/// [`report_revoked`](AccessTokens::report_revoked) and [`BlingError::Revoked`]. When renewal
/// itself answers [`AuthFailure::Revoked`], the client also calls `report_revoked` with the 401
/// it got, so implementations must treat `report_revoked` as idempotent (recording a revocation
/// that is already recorded is a no-op). `NotConnected`/`Revoked` from `access_token` make the
/// client return at once without any HTTP call. 5xx, timeouts and 429 never reach this trait.
#[async_trait::async_trait]
pub trait AccessTokens: Send + Sync {
    /// A valid access token for the tenant, renewed first when close to expiry.
    async fn access_token(&self, tenant: &TenantId) -> Result<String, AuthFailure>;
    /// `refused` got a 401: renew once (or pick up a token another worker already renewed) and
    /// return the token to retry with.
    async fn renew_after_unauthorized(
        &self,
        tenant: &TenantId,
        refused: &str,
    ) -> Result<String, AuthFailure>;
    /// A fresh token was refused too: the shop revoked access. Record it.
    async fn report_revoked(&self, tenant: &TenantId, evidence: RevocationEvidence);
    /// Whether this process learned of a revocation of the tenant after `since`. The client
    /// asks after every wait for the rate limiter: a job that took its token before another
    /// job found the access revoked must not send its call once its turn comes. Cheap (in
    /// memory) and never a database read; the default knows of none.
    fn revoked_after(&self, _tenant: &TenantId, _since: std::time::Instant) -> bool {
        false
    }
}

/// Why the token source could not give a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthFailure {
    /// The tenant never connected, or disconnected: there are no credentials.
    #[error("not connected to Bling")]
    NotConnected,
    /// The shop revoked access (`invalid_grant` on refresh, or already recorded as revoked).
    #[error("authorization revoked")]
    Revoked,
    /// Renewal failed for a reason that may pass (token endpoint down, 429, lock timeout).
    #[error("token renewal failed: {0}")]
    Transient(String),
}
