//! Configuration shared by the commands: where the database is, which tokens exist.
//! Every option can come from a flag or from the environment (12-factor style).

use std::path::PathBuf;

use clap::Args;

use crate::auth::{Role, TenantScope, TokenConfigError, TokenRegistry};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://bling-ledger.db";

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Where the ledger lives: `sqlite://FILE` (embedded, default) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,

    /// Connection pool size.
    #[arg(long, env = "BLING_LEDGER_DB_MAX_CONNECTIONS", default_value_t = 10, global = true)]
    pub max_connections: u32,
}

impl DatabaseArgs {
    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
    }
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// JSON array of tokens (`[{"name","sha256","role","tenant"}]`); see `bling-ledger token new`.
    #[arg(long, env = "BLING_LEDGER_TOKENS", hide_env_values = true)]
    pub tokens: Option<String>,

    /// A file holding that JSON array.
    #[arg(long, env = "BLING_LEDGER_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read tokens file {path}: {source}")]
    TokensFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tokens(#[from] TokenConfigError),
}

impl TokenArgs {
    /// Every configured token, from the variable and the file together.
    pub fn load(&self) -> Result<TokenRegistry, ConfigError> {
        let mut registry = TokenRegistry::default();
        if let Some(json) = &self.tokens {
            merge(&mut registry, TokenRegistry::from_json(json)?);
        }
        if let Some(path) = &self.tokens_file {
            let json = std::fs::read_to_string(path).map_err(|source| ConfigError::TokensFile {
                path: path.clone(),
                source,
            })?;
            merge(&mut registry, TokenRegistry::from_json(&json)?);
        }
        Ok(registry)
    }
}

fn merge(into: &mut TokenRegistry, from: TokenRegistry) {
    *into = std::mem::take(into).merged(from);
}

impl TokenRegistry {
    fn merged(self, other: TokenRegistry) -> TokenRegistry {
        other.entries().fold(self, |acc, (digest, principal)| acc.with_digest(digest, principal))
    }
}

/// A token valid for this process only, for a local run with nothing configured.
pub fn ephemeral_admin(registry: TokenRegistry) -> (String, TokenRegistry) {
    let (token, _) = crate::auth::new_token("local-admin", Role::Admin, "*");
    let registry = registry.with_token(&token, "local-admin", Role::Admin, TenantScope::All);
    (token, registry)
}
