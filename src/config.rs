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
    #[arg(
        long,
        env = "BLING_LEDGER_DB_MAX_CONNECTIONS",
        default_value_t = 10,
        global = true
    )]
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
        other.entries().fold(self, |acc, (digest, principal)| {
            acc.with_digest(digest, principal)
        })
    }
}

/// A token valid for this process only, for a local run with nothing configured.
pub fn ephemeral_admin(registry: TokenRegistry) -> (String, TokenRegistry) {
    let (token, _) = crate::auth::new_token("local-admin", Role::Admin, "*");
    let registry = registry.with_token(&token, "local-admin", Role::Admin, TenantScope::All);
    (token, registry)
}

/// Where Bling is and how this app is registered there.
#[derive(Debug, Clone, Args)]
pub struct BlingArgs {
    /// Bling API v3 base URL (the sandbox's URL in tests and the demo).
    #[arg(
        long,
        env = "BLING_API_URL",
        default_value = "https://api.bling.com.br/Api/v3"
    )]
    pub bling_api_url: String,
    /// Bling's OAuth consent page.
    #[arg(
        long,
        env = "BLING_AUTHORIZE_URL",
        default_value = "https://www.bling.com.br/Api/v3/oauth/authorize"
    )]
    pub bling_authorize_url: String,
    /// Bling's token endpoint. Its host differs between Bling's own sources (`www.`, `api.`,
    /// bare `bling.com.br`); most use this one.
    #[arg(
        long,
        env = "BLING_TOKEN_URL",
        default_value = "https://www.bling.com.br/Api/v3/oauth/token"
    )]
    pub bling_token_url: String,
    /// The app's client id, from Bling's "Central de Extensões → Área do integrador".
    #[arg(long, env = "BLING_CLIENT_ID")]
    pub bling_client_id: Option<String>,
    /// The app's client secret.
    #[arg(long, env = "BLING_CLIENT_SECRET", hide_env_values = true)]
    pub bling_client_secret: Option<String>,
    /// AES-256 key (base64 of 32 bytes) that encrypts stored tokens; `bling-ledger key new`.
    #[arg(long, env = "BLING_LEDGER_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,
    /// A file holding that key. On SQLite, `<database>.key` is created when no key is given.
    #[arg(long, env = "BLING_LEDGER_ENCRYPTION_KEY_FILE")]
    pub encryption_key_file: Option<PathBuf>,
    /// The key being rotated away from, still accepted for decryption.
    #[arg(
        long,
        env = "BLING_LEDGER_PREVIOUS_ENCRYPTION_KEY",
        hide_env_values = true
    )]
    pub previous_encryption_key: Option<String>,
    /// Renew access tokens this many seconds before they expire.
    #[arg(long, env = "BLING_REFRESH_AHEAD_SECS", default_value_t = 1800)]
    pub refresh_ahead_secs: u64,
    /// Spread renewals over up to this many more seconds, per tenant.
    #[arg(long, env = "BLING_REFRESH_JITTER_SECS", default_value_t = 600)]
    pub refresh_jitter_secs: u64,
    /// Token-endpoint calls allowed per 60 s for the whole fleet (Bling blocks at 20).
    #[arg(long, env = "BLING_TOKEN_CALLS_PER_MINUTE", default_value_t = 15)]
    pub token_calls_per_minute: u32,
    /// Requests per second per Bling account (Bling allows 3).
    #[arg(long, env = "BLING_RATE_LIMIT_PER_SEC", default_value_t = 3)]
    pub bling_rate_limit_per_sec: u32,
    /// Requests per day per Bling account (Bling allows 120,000).
    #[arg(long, env = "BLING_DAILY_QUOTA", default_value_t = 120_000)]
    pub bling_daily_quota: u64,
    /// Requests per second to Bling from this process, every shop together: its share of
    /// Bling's per-IP limit (600 requests in 10 s blocks the IP for 10 minutes). Processes
    /// behind one public IP divide 50 between them. 0 disables.
    #[arg(long, env = "BLING_LEDGER_EGRESS_PER_SEC", default_value_t = 50)]
    pub egress_per_sec: u32,
    /// Sync jobs running at once in this process, across all shops (capped at half the
    /// connection pool; each shop is also bounded by its own 3 req/s).
    #[arg(long, env = "BLING_LEDGER_SYNC_MAX_IN_FLIGHT", default_value_t = 64)]
    pub sync_max_in_flight: usize,
    /// Sync jobs of one shop running at once, for different customers.
    #[arg(long, env = "BLING_LEDGER_SYNC_JOBS_PER_TENANT", default_value_t = 4)]
    pub sync_jobs_per_tenant: usize,
    /// Seconds a sync lease lives without a heartbeat; a dead process's shops are taken over
    /// after this.
    #[arg(long, env = "BLING_LEDGER_SYNC_LEASE_TTL_SECS", default_value_t = 60)]
    pub sync_lease_ttl_secs: u64,
    /// Name of the sales-order situação that lets the shop issue the NF-e (ids are discovered
    /// per account).
    #[arg(long, env = "BLING_SITUACAO_BILLED", default_value = "Atendido")]
    pub situacao_billed: String,
    /// Name of the situação of a cancelled invoice's order.
    #[arg(long, env = "BLING_SITUACAO_CANCELLED", default_value = "Cancelado")]
    pub situacao_cancelled: String,
    /// Have Bling generate the NF-e from the order: `none`, `all`, or tenant ids separated by
    /// commas.
    #[arg(long, env = "BLING_GENERATE_NFE", default_value = "none")]
    pub generate_nfe: String,
    /// Our installments' payment methods as the account's formas de pagamento, for names the
    /// defaults by fiscal type do not cover: `ours=<descrição>|tipo:<N>|#<id>` separated by
    /// commas, `tenant/ours=…` for one shop (see README, "Payment methods").
    #[arg(
        long,
        env = "BLING_PAYMENT_METHODS",
        default_value = "",
        value_parser = crate::sync::payment_methods::PaymentMethodMap::parse
    )]
    pub payment_methods: crate::sync::payment_methods::PaymentMethodMap,
}

#[derive(Debug, thiserror::Error)]
pub enum BlingConfigError {
    #[error("BLING_CLIENT_SECRET is required when BLING_CLIENT_ID is set")]
    MissingSecret,
    #[error(
        "no encryption key: on PostgreSQL set BLING_LEDGER_ENCRYPTION_KEY or \
         BLING_LEDGER_ENCRYPTION_KEY_FILE (create one with `bling-ledger key new`)"
    )]
    MissingKey,
    #[error("encryption key: {0}")]
    Key(#[from] crate::oauth::crypto::CryptoError),
}

impl BlingArgs {
    /// The key ring: the configured key, or on SQLite a key file beside the database.
    pub fn key_ring(
        &self,
        database_url: &str,
    ) -> Result<crate::oauth::crypto::KeyRing, BlingConfigError> {
        use crate::oauth::crypto::{EncryptionKey, KeyRing};
        let current = if let Some(key) = &self.encryption_key {
            EncryptionKey::from_base64(key)?
        } else if let Some(path) = &self.encryption_key_file {
            EncryptionKey::load_or_create_file(path)?
        } else if let Some(path) = sqlite_key_path(database_url) {
            EncryptionKey::load_or_create_file(&path)?
        } else {
            return Err(BlingConfigError::MissingKey);
        };
        let mut ring = KeyRing::new(current);
        if let Some(previous) = &self.previous_encryption_key {
            ring = ring.with_previous(EncryptionKey::from_base64(previous)?);
        }
        Ok(ring)
    }

    /// The connection settings, or `None` when no Bling app is configured.
    pub fn auth_settings(
        &self,
        database_url: &str,
    ) -> Result<Option<crate::oauth::AuthSettings>, BlingConfigError> {
        let Some(client_id) = &self.bling_client_id else {
            return Ok(None);
        };
        let secret = self
            .bling_client_secret
            .as_ref()
            .ok_or(BlingConfigError::MissingSecret)?;
        let token_url = self.bling_token_url.clone();
        Ok(Some(crate::oauth::AuthSettings {
            oauth: crate::oauth::endpoint::OAuthSettings {
                client_id: client_id.clone(),
                client_secret: crate::oauth::crypto::Secret::new(secret.clone()),
                authorize_url: self.bling_authorize_url.clone(),
                token_url,
                timeout: std::time::Duration::from_secs(20),
            },
            keys: self.key_ring(database_url)?,
            renewal: crate::oauth::tokens::RenewalPolicy {
                refresh_ahead: std::time::Duration::from_secs(self.refresh_ahead_secs),
                jitter: std::time::Duration::from_secs(self.refresh_jitter_secs),
                ..Default::default()
            },
            token_calls_per_minute: self.token_calls_per_minute,
            state_ttl: std::time::Duration::from_secs(600),
            renewal_interval: std::time::Duration::from_secs(30),
        }))
    }
}

impl BlingArgs {
    /// The sync worker's settings.
    pub fn sync_config(&self) -> crate::server::SyncConfig {
        let generate_nfe = match self.generate_nfe.trim() {
            "" | "none" => crate::sync::NfeTenants::None,
            "all" | "*" => crate::sync::NfeTenants::All,
            list => crate::sync::NfeTenants::Only(
                list.split(',').map(|t| t.trim().to_string()).collect(),
            ),
        };
        crate::server::SyncConfig {
            run_worker: true,
            bling_api_url: self.bling_api_url.clone(),
            client: crate::bling::client::ClientConfig {
                rate_limit_per_sec: self.bling_rate_limit_per_sec,
                daily_quota: self.bling_daily_quota,
                egress_per_sec: self.egress_per_sec,
                ..Default::default()
            },
            settings: crate::sync::SyncSettings {
                situacao_billed: self.situacao_billed.clone(),
                situacao_cancelled: self.situacao_cancelled.clone(),
                generate_nfe,
                payment_methods: self.payment_methods.clone(),
                max_in_flight: self.sync_max_in_flight.max(1),
                jobs_per_tenant: self.sync_jobs_per_tenant.max(1),
                lease_ttl: std::time::Duration::from_secs(self.sync_lease_ttl_secs.max(1)),
                ..Default::default()
            },
        }
    }
}

/// The master key ring as the environment configures it (the same variables as
/// [`BlingArgs::key_ring`]: `BLING_LEDGER_ENCRYPTION_KEY`, `…_KEY_FILE`, `…_PREVIOUS_…`, or
/// the SQLite key file beside the database), for the commands that take no Bling flags but
/// read customers' personal data (`crate::store::personal`). `None` when no key is configured
/// (PostgreSQL without one).
pub fn master_key_ring_from_env(
    database_url: &str,
) -> Result<Option<crate::oauth::crypto::KeyRing>, BlingConfigError> {
    use crate::oauth::crypto::{EncryptionKey, KeyRing};
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let current = if let Some(key) = var("BLING_LEDGER_ENCRYPTION_KEY") {
        EncryptionKey::from_base64(&key)?
    } else if let Some(path) = var("BLING_LEDGER_ENCRYPTION_KEY_FILE") {
        EncryptionKey::load_or_create_file(std::path::Path::new(&path))?
    } else if let Some(path) = sqlite_key_path(database_url) {
        EncryptionKey::load_or_create_file(&path)?
    } else {
        return Ok(None);
    };
    let mut ring = KeyRing::new(current);
    if let Some(previous) = var("BLING_LEDGER_PREVIOUS_ENCRYPTION_KEY") {
        ring = ring.with_previous(EncryptionKey::from_base64(&previous)?);
    }
    Ok(Some(ring))
}

/// `sqlite://path/to/db` → `path/to/db.key`; `None` for PostgreSQL and in-memory databases.
pub fn sqlite_key_path(database_url: &str) -> Option<PathBuf> {
    let path = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Some(PathBuf::from(format!("{path}.key")))
}

/// The checkpoint signing key (see `audit::checkpoint`).
#[derive(Debug, Clone, Default, Args)]
pub struct SealArgs {
    /// Ed25519 secret key (base64 of 32 bytes) that signs checkpoints of the sealed log;
    /// `bling-ledger key new-signing`. On SQLite, `<database>.signing-key` is created when none
    /// is given.
    #[arg(long, env = "BLING_LEDGER_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
    /// A file holding that key.
    #[arg(long, env = "BLING_LEDGER_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
}

impl SealArgs {
    /// The configured key, or on SQLite the key file beside the database (created the first
    /// time); `None` on PostgreSQL without one.
    pub fn signing_key(
        &self,
        database_url: &str,
    ) -> Result<Option<crate::audit::checkpoint::SigningKey>, crate::audit::AuditError> {
        use crate::audit::checkpoint::SigningKey;
        Ok(if let Some(key) = &self.signing_key {
            Some(SigningKey::from_base64(key)?)
        } else if let Some(path) = &self.signing_key_file {
            Some(SigningKey::load_or_create_file(path)?)
        } else if let Some(path) = sqlite_signing_key_path(database_url) {
            Some(SigningKey::load_or_create_file(&path)?)
        } else {
            None
        })
    }
}

/// `sqlite://path/to/db` → `path/to/db.signing-key`; `None` for PostgreSQL and in-memory.
pub fn sqlite_signing_key_path(database_url: &str) -> Option<PathBuf> {
    let key = sqlite_key_path(database_url)?;
    Some(key.with_extension("signing-key"))
}
