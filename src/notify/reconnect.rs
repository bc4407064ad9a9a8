//! Self-service reconnect links: a URL the shop owner opens to go through Bling's consent again,
//! with no support token.
//!
//! `/reconnect/{tenant}/{link}?expires=<unix ms>&sig=<base64url HMAC-SHA256>`: the signature
//! covers the tenant, the link id and the expiry, keyed by a key derived from the ledger's
//! encryption key ([`crate::oauth::crypto::KeyRing::signing_key`]). So:
//! - a changed tenant, link id or expiry (a link "for another tenant") fails the signature
//!   before anything is looked up, and stores nothing;
//! - the database row holds no secret: reading it cannot make a link;
//! - a link starts at most one consent flow ([`crate::store::reconnect_links::take`]), only
//!   before it expires, and grants nothing else: it can only send that tenant's owner to Bling.
//!
//! Opening a valid link records `opened`; starting the consent records `used`. A used, expired
//! or invalid link explains itself and stores nothing.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::store::reconnect_links::{self, LinkRow};
use crate::store::{Db, StoreError, Tx};

/// Default lifetime of a link: 7 days.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Makes and checks links.
#[derive(Clone)]
pub struct ReconnectLinks {
    key: [u8; 32],
    /// The ledger's public base URL (`https://ledger.example.com`), without a trailing slash.
    public_url: String,
    lifetime: Duration,
}

impl std::fmt::Debug for ReconnectLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectLinks")
            .field("public_url", &self.public_url)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// A link just made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedLink {
    pub link_id: String,
    pub url: String,
    pub expires_at_ms: i64,
}

/// Why a link cannot be used; each says what to do, and none stored anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkProblem {
    #[error("this reconnect link is not one we issued (it may have been changed or cut short); ask your support contact for a new one")]
    Invalid,
    #[error("this reconnect link expired; ask your support contact for a new one")]
    Expired,
    #[error("this reconnect link was already used; if the shop is still not connected, ask your support contact for a new one")]
    Used,
}

impl ReconnectLinks {
    pub fn new(key: [u8; 32], public_url: &str, lifetime: Duration) -> Self {
        Self {
            key,
            public_url: public_url.trim_end_matches('/').to_string(),
            lifetime,
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    fn signature(&self, tenant: &str, link_id: &str, expires_at_ms: i64) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC accepts a key of any length");
        for part in [
            "reconnect-link v1",
            tenant,
            link_id,
            &expires_at_ms.to_string(),
        ] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        mac.finalize().into_bytes().to_vec()
    }

    /// The URL of a link.
    pub fn url(&self, tenant: &str, link_id: &str, expires_at_ms: i64) -> String {
        format!(
            "{}/reconnect/{tenant}/{link_id}?expires={expires_at_ms}&sig={}",
            self.public_url,
            URL_SAFE_NO_PAD.encode(self.signature(tenant, link_id, expires_at_ms))
        )
    }

    /// A new link for `tenant`, stored in `tx` (the notifier makes one inside its batch).
    pub async fn issue_in(
        &self,
        tx: &mut Tx,
        tenant: &str,
        created_by: &str,
        now_ms: i64,
    ) -> Result<IssuedLink, StoreError> {
        let link_id = hex::encode(rand::random::<[u8; 16]>());
        let expires_at_ms = now_ms + self.lifetime.as_millis() as i64;
        reconnect_links::insert(
            tx,
            &LinkRow {
                link_id: link_id.clone(),
                tenant: tenant.to_string(),
                created_by: created_by.to_string(),
                created_at_ms: now_ms,
                expires_at_ms,
                opened_at_ms: None,
                used_at_ms: None,
            },
        )
        .await?;
        Ok(IssuedLink {
            url: self.url(tenant, &link_id, expires_at_ms),
            link_id,
            expires_at_ms,
        })
    }

    /// A new link for `tenant`, in a transaction of its own.
    pub async fn issue(
        &self,
        db: &Db,
        tenant: &str,
        created_by: &str,
        now_ms: i64,
    ) -> Result<IssuedLink, StoreError> {
        let mut tx = db.begin().await?;
        let link = self.issue_in(&mut tx, tenant, created_by, now_ms).await?;
        tx.commit().await?;
        Ok(link)
    }

    /// Checks a link as the shop's browser presents it. Nothing is written.
    pub async fn check(
        &self,
        db: &Db,
        tenant: &str,
        link_id: &str,
        expires: Option<&str>,
        sig: Option<&str>,
        now_ms: i64,
    ) -> Result<Result<LinkRow, LinkProblem>, StoreError> {
        let (Some(expires), Some(sig)) = (expires, sig) else {
            return Ok(Err(LinkProblem::Invalid));
        };
        let (Ok(expires_at_ms), Ok(given)) = (expires.parse::<i64>(), URL_SAFE_NO_PAD.decode(sig))
        else {
            return Ok(Err(LinkProblem::Invalid));
        };
        let expected = self.signature(tenant, link_id, expires_at_ms);
        if !bool::from(expected.ct_eq(&given)) {
            return Ok(Err(LinkProblem::Invalid));
        }
        let Some(row) = reconnect_links::get(db, link_id).await? else {
            return Ok(Err(LinkProblem::Invalid));
        };
        if row.tenant != tenant || row.expires_at_ms != expires_at_ms {
            return Ok(Err(LinkProblem::Invalid));
        }
        if row.used_at_ms.is_some() {
            return Ok(Err(LinkProblem::Used));
        }
        if row.expires_at_ms <= now_ms {
            return Ok(Err(LinkProblem::Expired));
        }
        Ok(Ok(row))
    }
}
