//! Bearer tokens: who may call what, for which tenant.
//!
//! Tokens are configured as SHA-256 digests, never in clear: the configuration file can be
//! read by an operator without granting access. Tokens are long random strings (see
//! `bling-ledger token new`), so a fast hash is enough; a slow password hash would only cost
//! every request.

use std::collections::HashMap;

use aggregates::ids::TenantId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The pet-shop system: posts customers and invoices.
    Ingest,
    /// Support staff: reads sync state and history, reconnects, replays.
    Support,
    /// Auditors: export and verify the log.
    Auditor,
    /// Everything.
    Admin,
}

impl Role {
    pub fn parse(raw: &str) -> Option<Role> {
        match raw {
            "ingest" => Some(Role::Ingest),
            "support" => Some(Role::Support),
            "auditor" => Some(Role::Auditor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The tenants a token may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    All,
    One(TenantId),
}

impl TenantScope {
    pub fn allows(&self, tenant: &TenantId) -> bool {
        match self {
            TenantScope::All => true,
            TenantScope::One(t) => t == tenant,
        }
    }
}

/// A caller, once its token is recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub scope: TenantScope,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token, or an unknown one: 401.
    Unauthenticated,
    /// A known token outside its role or tenant: 403.
    Forbidden(String),
}

impl Principal {
    /// Admins may do anything; other roles only what is listed.
    pub fn require(&self, roles: &[Role], tenant: Option<&TenantId>) -> Result<(), Denied> {
        if self.role != Role::Admin && !roles.contains(&self.role) {
            return Err(Denied::Forbidden(format!(
                "token '{}' has role {:?}, this needs one of {:?}",
                self.name, self.role, roles
            )));
        }
        if let Some(tenant) = tenant {
            if !self.scope.allows(tenant) {
                return Err(Denied::Forbidden(format!(
                    "token '{}' may not act on tenant '{tenant}'",
                    self.name
                )));
            }
        }
        Ok(())
    }
}

/// One configured token, as it appears in the tokens file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub name: String,
    /// Lower-case hex SHA-256 of the token.
    pub sha256: String,
    pub role: Role,
    /// A tenant id, or `"*"` for every tenant.
    pub tenant: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenConfigError {
    #[error("tokens configuration is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("token '{name}': {problem}")]
    Entry { name: String, problem: String },
}

/// The configured tokens, looked up by digest.
#[derive(Debug, Clone, Default)]
pub struct TokenRegistry {
    by_digest: HashMap<[u8; 32], Principal>,
}

pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenRegistry {
    /// Parses the JSON array of [`TokenEntry`] that `BLING_LEDGER_TOKENS` or the tokens file hold.
    pub fn from_json(json: &str) -> Result<TokenRegistry, TokenConfigError> {
        let entries: Vec<TokenEntry> = serde_json::from_str(json)?;
        let mut registry = TokenRegistry::default();
        for entry in entries {
            registry.add(entry)?;
        }
        Ok(registry)
    }

    pub fn add(&mut self, entry: TokenEntry) -> Result<(), TokenConfigError> {
        let problem = |problem: &str| TokenConfigError::Entry {
            name: entry.name.clone(),
            problem: problem.to_string(),
        };
        let bytes = hex::decode(&entry.sha256).map_err(|_| problem("sha256 is not hex"))?;
        let digest: [u8; 32] = bytes
            .try_into()
            .map_err(|_| problem("sha256 must be 64 hex characters"))?;
        let scope = if entry.tenant == "*" {
            TenantScope::All
        } else {
            TenantScope::One(
                TenantId::parse(&entry.tenant).map_err(|_| problem("tenant is not a valid id"))?,
            )
        };
        self.by_digest.insert(
            digest,
            Principal {
                name: entry.name,
                role: entry.role,
                scope,
            },
        );
        Ok(())
    }

    /// Adds a token given in clear (tests, the demo), hashing it like any other.
    pub fn with_token(mut self, token: &str, name: &str, role: Role, scope: TenantScope) -> Self {
        self.by_digest.insert(
            digest(token),
            Principal {
                name: name.to_string(),
                role,
                scope,
            },
        );
        self
    }

    pub(crate) fn entries(self) -> impl Iterator<Item = ([u8; 32], Principal)> {
        self.by_digest.into_iter()
    }

    pub(crate) fn with_digest(mut self, digest: [u8; 32], principal: Principal) -> Self {
        self.by_digest.insert(digest, principal);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// The principal for an `Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, Denied> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Denied::Unauthenticated)?;
        self.by_digest
            .get(&digest(token))
            .cloned()
            .ok_or(Denied::Unauthenticated)
    }
}

/// A new random token (256 bits, URL-safe) and its configuration entry.
pub fn new_token(name: &str, role: Role, tenant: &str) -> (String, TokenEntry) {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    let token = format!(
        "blt_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let entry = TokenEntry {
        name: name.to_string(),
        sha256: hex::encode(digest(&token)),
        role,
        tenant: tenant.to_string(),
    };
    (token, entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_authenticate_by_digest() {
        let (token, entry) = new_token("petshop", Role::Ingest, "shop-1");
        let json = serde_json::to_string(&vec![entry]).unwrap();
        assert!(
            !json.contains(&token),
            "the configuration never holds the token"
        );
        let registry = TokenRegistry::from_json(&json).unwrap();
        let principal = registry
            .authenticate(Some(&format!("Bearer {token}")))
            .unwrap();
        assert_eq!(principal.role, Role::Ingest);
        assert_eq!(
            registry.authenticate(Some("Bearer nope")),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(registry.authenticate(None), Err(Denied::Unauthenticated));
        assert_eq!(
            registry.authenticate(Some(&token)),
            Err(Denied::Unauthenticated)
        );
    }

    #[test]
    fn roles_and_tenants_are_enforced() {
        let shop = TenantId::parse("shop-1").unwrap();
        let other = TenantId::parse("shop-2").unwrap();
        let ingest = Principal {
            name: "p".into(),
            role: Role::Ingest,
            scope: TenantScope::One(shop.clone()),
        };
        assert!(ingest.require(&[Role::Ingest], Some(&shop)).is_ok());
        assert!(ingest.require(&[Role::Ingest], Some(&other)).is_err());
        assert!(ingest.require(&[Role::Support], Some(&shop)).is_err());
        let admin = Principal {
            name: "a".into(),
            role: Role::Admin,
            scope: TenantScope::All,
        };
        assert!(admin.require(&[Role::Auditor], Some(&other)).is_ok());
    }

    #[test]
    fn bad_entries_are_named() {
        let err = TokenRegistry::from_json(
            r#"[{"name":"x","sha256":"zz","role":"ingest","tenant":"*"}]"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("token 'x'"));
        assert!(TokenRegistry::from_json(
            r#"[{"name":"x","sha256":"00","role":"boss","tenant":"*"}]"#
        )
        .is_err());
    }
}
