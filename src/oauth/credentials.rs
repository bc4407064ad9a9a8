//! The credentials table: tokens encrypted at rest, written with a version fence.

use chrono::{DateTime, TimeZone, Utc};

use super::crypto::{CryptoError, KeyRing, Secret};
use super::endpoint::TokenGrant;
use crate::on_db;
use crate::store::{now_ms, Db, StoreError};

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
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored credentials cannot be decrypted: {0}")]
    Crypto(#[from] CryptoError),
}

impl From<sqlx::Error> for CredentialError {
    fn from(e: sqlx::Error) -> Self {
        CredentialError::Store(StoreError::Database(e))
    }
}

pub fn from_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

type Row = (
    i64,
    String,
    String,
    i64,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

const SELECT: &str = "SELECT version, access_token, refresh_token, access_expires_at_ms, scope,
                             status, connected_at_ms, last_refresh_at_ms, last_error,
                             last_error_at_ms
                      FROM bling_credentials WHERE tenant = $1";

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
        let row: Option<Row> = on_db!(&self.db, as Row, SELECT, [tenant], fetch_optional)?;
        let Some((
            version,
            access,
            refresh,
            expires,
            scope,
            status,
            connected,
            refreshed,
            error,
            error_at,
        )) = row
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
        let now = now_ms();
        let version: (i64,) = on_db!(
            &self.db,
            as (i64,),
            "INSERT INTO bling_credentials (tenant, version, access_token, refresh_token,
                 access_expires_at_ms, scope, status, connected_at_ms)
             VALUES ($1, 1, $2, $3, $4, $5, 'active', $6)
             ON CONFLICT (tenant) DO UPDATE SET
                 version = bling_credentials.version + 1,
                 access_token = excluded.access_token,
                 refresh_token = excluded.refresh_token,
                 access_expires_at_ms = excluded.access_expires_at_ms,
                 scope = excluded.scope,
                 status = 'active',
                 connected_at_ms = excluded.connected_at_ms,
                 last_refresh_at_ms = NULL,
                 last_error = NULL,
                 last_error_at_ms = NULL
             RETURNING version",
            [tenant, access, refresh, grant.access_expires_at.timestamp_millis(), &grant.scope, now],
            fetch_one
        )?;
        Ok(version.0)
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
        let updated = on_db!(
            &self.db,
            "UPDATE bling_credentials SET version = version + 1, access_token = $3,
                 refresh_token = $4, access_expires_at_ms = $5, last_refresh_at_ms = $6,
                 last_error = NULL, last_error_at_ms = NULL
             WHERE tenant = $1 AND version = $2 AND status = 'active'",
            [
                tenant,
                read_version,
                access,
                refresh,
                grant.access_expires_at.timestamp_millis(),
                now_ms()
            ],
            execute
        )?;
        Ok(updated == 1)
    }

    pub async fn set_status(
        &self,
        tenant: &str,
        status: CredentialStatus,
        error: Option<&str>,
    ) -> Result<(), CredentialError> {
        on_db!(
            &self.db,
            "UPDATE bling_credentials SET status = $2, last_error = COALESCE($3, last_error),
                 last_error_at_ms = CASE WHEN $3 IS NULL THEN last_error_at_ms ELSE $4 END
             WHERE tenant = $1",
            [tenant, status.as_str(), error, now_ms()],
            execute
        )?;
        Ok(())
    }

    pub async fn record_error(&self, tenant: &str, error: &str) -> Result<(), CredentialError> {
        on_db!(
            &self.db,
            "UPDATE bling_credentials SET last_error = $2, last_error_at_ms = $3 WHERE tenant = $1",
            [tenant, error, now_ms()],
            execute
        )?;
        Ok(())
    }

    /// Tenants with active credentials and when their access token expires.
    pub async fn active_tenants(
        &self,
    ) -> Result<Vec<(String, i64, DateTime<Utc>)>, CredentialError> {
        let rows: Vec<(String, i64, i64)> = on_db!(
            &self.db,
            as (String, i64, i64),
            "SELECT tenant, version, access_expires_at_ms FROM bling_credentials
             WHERE status = 'active' ORDER BY tenant",
            [],
            fetch_all
        )?;
        Ok(rows
            .into_iter()
            .map(|(t, v, e)| (t, v, from_ms(e)))
            .collect())
    }

    /// Re-encrypts every stored token under the ring's current key. Returns how many rows.
    pub async fn reencrypt_all(&self) -> Result<u64, CredentialError> {
        let rows: Vec<(String, String, String)> = on_db!(
            &self.db,
            as (String, String, String),
            "SELECT tenant, access_token, refresh_token FROM bling_credentials",
            [],
            fetch_all
        )?;
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
            changed += on_db!(
                &self.db,
                "UPDATE bling_credentials SET access_token = $2, refresh_token = $3
                 WHERE tenant = $1 AND access_token = $4 AND refresh_token = $5",
                [&tenant, a, r, &access, &refresh],
                execute
            )?;
        }
        Ok(changed)
    }
}
