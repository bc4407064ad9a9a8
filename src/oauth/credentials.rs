//! Credentials: tokens encrypted at rest (here, and nowhere else), stored with a version fence
//! by `store::connections`.

use chrono::{DateTime, TimeZone, Utc};

use super::crypto::{CryptoError, KeyRing, Secret};
use super::endpoint::TokenGrant;
use crate::store::connections::{self, CredentialRow};
use crate::store::{Db, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialStatus {
    Active,
    Revoked,
    Disconnected,
}

impl CredentialStatus {
    fn as_str(self) -> &'static str {
        match self {
            CredentialStatus::Active => "active",
            CredentialStatus::Revoked => "revoked",
            CredentialStatus::Disconnected => "disconnected",
        }
    }

    fn parse(raw: &str) -> CredentialStatus {
        match raw {
            "revoked" => CredentialStatus::Revoked,
            "disconnected" => CredentialStatus::Disconnected,
            _ => CredentialStatus::Active,
        }
    }
}

/// A tenant's stored credentials, decrypted. `Debug` shows fingerprints only.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub version: i64,
    pub access: Secret,
    pub refresh: Secret,
    pub access_expires_at: DateTime<Utc>,
    pub scope: String,
    pub status: CredentialStatus,
    pub connected_at: DateTime<Utc>,
    pub last_refresh_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Whether the current access token has been used since it was issued (an unused one is
    /// not renewed ahead of its expiry).
    pub used: bool,
    /// A refresh of this version was sent and its answer lost.
    pub refresh_unanswered: bool,
}

/// Bling's refresh tokens live 30 days ([DOC] via `docs/bling-api.md`, "OAuth 2.0").
pub const REFRESH_TOKEN_LIFE: chrono::Duration = chrono::Duration::days(30);
/// An idle shop's refresh token is renewed this long after it was issued: three days before
/// its end, room for an outage or a tight token budget.
pub const REFRESH_KEEPALIVE: chrono::Duration = chrono::Duration::days(27);

fn idle_schedule() -> connections::IdleSchedule {
    connections::IdleSchedule {
        keepalive_ms: REFRESH_KEEPALIVE.num_milliseconds(),
        refresh_life_ms: REFRESH_TOKEN_LIFE.num_milliseconds(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored credentials cannot be decrypted: {0}")]
    Crypto(#[from] CryptoError),
}

pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Reads and writes credentials; encryption happens here and nowhere else.
#[derive(Clone, Debug)]
pub struct CredentialStore {
    db: Db,
    keys: KeyRing,
}

fn context(tenant: &str, field: &str) -> String {
    format!("bling-ledger/{tenant}/{field}")
}

impl CredentialStore {
    pub fn new(db: Db, keys: KeyRing) -> Self {
        Self { db, keys }
    }

    pub async fn load(&self, tenant: &str) -> Result<Option<Credentials>, CredentialError> {
        let Some(CredentialRow {
            version,
            access_token: access,
            refresh_token: refresh,
            access_expires_at_ms: expires,
            scope,
            status,
            connected_at_ms: connected,
            last_refresh_at_ms: refreshed,
            last_error: error,
            last_error_at_ms: error_at,
            used_at_ms,
            refresh_sent_at_ms,
        }) = connections::load_credentials(&self.db, tenant).await?
        else {
            return Ok(None);
        };
        Ok(Some(Credentials {
            version,
            access: self.keys.decrypt(&access, &context(tenant, "access"))?,
            refresh: self.keys.decrypt(&refresh, &context(tenant, "refresh"))?,
            access_expires_at: from_ms(expires),
            scope,
            status: CredentialStatus::parse(&status),
            connected_at: from_ms(connected),
            last_refresh_at: refreshed.map(from_ms),
            last_error: error,
            last_error_at: error_at.map(from_ms),
            used: used_at_ms.is_some(),
            refresh_unanswered: refresh_sent_at_ms.is_some(),
        }))
    }

    /// Stores the tokens of a new authorization (connect or reconnect), whatever was there.
    pub async fn store_authorization(
        &self,
        tenant: &str,
        grant: &TokenGrant,
    ) -> Result<i64, CredentialError> {
        let access = self
            .keys
            .encrypt(&grant.access, &context(tenant, "access"))?;
        let refresh = self
            .keys
            .encrypt(&grant.refresh, &context(tenant, "refresh"))?;
        Ok(connections::store_authorization(
            &self.db,
            tenant,
            &access,
            &refresh,
            grant.access_expires_at.timestamp_millis(),
            &grant.scope,
            idle_schedule(),
        )
        .await?)
    }

    /// Stores refreshed tokens only if nobody wrote since `read_version`. `false` means a
    /// newer token is already stored: the caller must use that one.
    pub async fn store_refresh(
        &self,
        tenant: &str,
        read_version: i64,
        grant: &TokenGrant,
    ) -> Result<bool, CredentialError> {
        let access = self
            .keys
            .encrypt(&grant.access, &context(tenant, "access"))?;
        let refresh = self
            .keys
            .encrypt(&grant.refresh, &context(tenant, "refresh"))?;
        Ok(connections::store_refresh(
            &self.db,
            tenant,
            read_version,
            &access,
            &refresh,
            grant.access_expires_at.timestamp_millis(),
            idle_schedule(),
        )
        .await?)
    }

    /// The first use of `version`'s access token: renew it at `renew_at` from now on.
    pub async fn mark_used(
        &self,
        tenant: &str,
        version: i64,
        renew_at: DateTime<Utc>,
    ) -> Result<(), CredentialError> {
        connections::mark_used(&self.db, tenant, version, renew_at.timestamp_millis()).await?;
        Ok(())
    }

    /// A refresh of `version` was sent and its answer lost.
    pub async fn mark_refresh_unanswered(
        &self,
        tenant: &str,
        version: i64,
    ) -> Result<(), CredentialError> {
        connections::mark_refresh_unanswered(&self.db, tenant, version).await?;
        Ok(())
    }

    /// Puts `version`'s renewal off until `at`.
    pub async fn postpone_renewal(
        &self,
        tenant: &str,
        version: i64,
        at: DateTime<Utc>,
    ) -> Result<(), CredentialError> {
        connections::postpone_renewal(&self.db, tenant, version, at.timestamp_millis()).await?;
        Ok(())
    }

    /// Connections due for renewal now, earliest deadline first: tenant, version, deadline.
    pub async fn renewals_due(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, i64, DateTime<Utc>)>, CredentialError> {
        let rows = connections::renewals_due(&self.db, crate::store::now_ms(), limit).await?;
        Ok(rows
            .into_iter()
            .map(|(t, v, d)| (t, v, from_ms(d)))
            .collect())
    }

    /// Renewals falling due before `until` (those already due included).
    pub async fn renewals_due_before(&self, until: DateTime<Utc>) -> Result<i64, CredentialError> {
        Ok(connections::renewals_due_before(&self.db, until.timestamp_millis()).await?)
    }

    pub async fn set_status(
        &self,
        tenant: &str,
        status: CredentialStatus,
        error: Option<&str>,
    ) -> Result<(), CredentialError> {
        connections::set_credential_status(&self.db, tenant, status.as_str(), error).await?;
        Ok(())
    }

    pub async fn record_error(&self, tenant: &str, error: &str) -> Result<(), CredentialError> {
        connections::record_credential_error(&self.db, tenant, error).await?;
        Ok(())
    }

    /// Tenants with active credentials and when their access token expires.
    pub async fn active_tenants(
        &self,
    ) -> Result<Vec<(String, i64, DateTime<Utc>)>, CredentialError> {
        let rows = connections::active_credentials(&self.db).await?;
        Ok(rows
            .into_iter()
            .map(|(t, v, e)| (t, v, from_ms(e)))
            .collect())
    }

    /// Re-encrypts every stored token under the ring's current key. Returns how many rows.
    pub async fn reencrypt_all(&self) -> Result<u64, CredentialError> {
        let rows = connections::all_ciphertexts(&self.db).await?;
        let mut changed = 0;
        for (tenant, access, refresh) in rows {
            if self.keys.is_current(&access) && self.keys.is_current(&refresh) {
                continue;
            }
            let a = self.keys.decrypt(&access, &context(&tenant, "access"))?;
            let r = self.keys.decrypt(&refresh, &context(&tenant, "refresh"))?;
            let a = self.keys.encrypt(&a, &context(&tenant, "access"))?;
            let r = self.keys.encrypt(&r, &context(&tenant, "refresh"))?;
            // Compare-and-set on the old ciphertexts: a refresh meanwhile already wrote under
            // the current key.
            changed +=
                connections::swap_ciphertexts(&self.db, &tenant, &a, &r, &access, &refresh).await?;
        }
        Ok(changed)
    }
}
