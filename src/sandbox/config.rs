//! Everything a sandbox can be told at start: client apps, token lifetimes, limits, faults, and
//! per-account situação ids.

use crate::sandbox::error::SandboxError;
use crate::sandbox::faults::FaultConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A registered OAuth client app (what Bling's "Central de Extensões" would hold).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientApp {
    pub client_id: String,
    pub client_secret: String,
    /// Where `/oauth/authorize` sends the browser back with `code` and `state`.
    pub redirect_uri: String,
}

/// Ids of Bling's default sales-order situações for one account. Real accounts agree on the
/// commonly seen values, but they are unconfirmed, so tests give some accounts different ones to
/// prove clients discover them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SituacaoIds {
    pub em_aberto: i64,
    pub atendido: i64,
    pub cancelado: i64,
    pub em_andamento: i64,
    pub venda_agenciada: i64,
    pub em_digitacao: i64,
    pub verificado: i64,
}

impl Default for SituacaoIds {
    fn default() -> Self {
        SituacaoIds {
            em_aberto: 6,
            atendido: 9,
            cancelado: 12,
            em_andamento: 15,
            venda_agenciada: 18,
            em_digitacao: 21,
            verificado: 24,
        }
    }
}

/// An account (one shop's Bling company) prepared at start instead of created on first login.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountConfig {
    pub name: String,
    /// Default situação ids for this account; `None` uses `SandboxConfig::situacao_ids`.
    pub situacao_ids: Option<SituacaoIds>,
    /// Custom sales-order situações (e.g. "Aguardando NF-e"); ids are assigned at start.
    pub custom_situacoes: Vec<String>,
    /// Faults for this account only; `None` falls back to the global faults.
    pub faults: Option<FaultConfig>,
}

/// Bling's IP blocks ([DOC] /limites): 300 errors in 10 s or 600 requests in 10 s block the IP
/// for 10 minutes. Every sandbox client is 127.0.0.1, so in the sandbox the IP is, in effect,
/// the whole sandbox. A limit of 0 switches that rule off; [`IpBlockConfig::off`] both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpBlockConfig {
    /// Error answers (status >= 400, 429s included) allowed per `window`; 0 = no error rule.
    pub errors: u32,
    /// Requests allowed per `window`; 0 = no request rule.
    pub requests: u32,
    pub window: Duration,
    /// How long the IP stays blocked.
    pub block: Duration,
}

impl IpBlockConfig {
    /// No IP blocks (benchmarks, load tests).
    pub fn off() -> Self {
        IpBlockConfig {
            errors: 0,
            requests: 0,
            ..IpBlockConfig::default()
        }
    }

    pub fn is_off(&self) -> bool {
        self.errors == 0 && self.requests == 0
    }
}

impl Default for IpBlockConfig {
    fn default() -> Self {
        IpBlockConfig {
            errors: 300,
            requests: 600,
            window: Duration::from_secs(10),
            block: Duration::from_secs(600),
        }
    }
}

/// Configuration of a sandbox server. `Default` gives Bling's documented limits and lifetimes
/// and one client app, [`SandboxConfig::DEMO_CLIENT_ID`].
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub clients: Vec<ClientApp>,
    /// Access-token lifetime (Bling: 6 h).
    pub access_ttl: Duration,
    /// Refresh-token lifetime (Bling: 30 days); each rotation starts a new one.
    pub refresh_ttl: Duration,
    /// Authorization-code lifetime (Bling: 60 s).
    pub code_ttl: Duration,
    /// The `scope` string returned by the token endpoint.
    pub scope: String,
    /// Requests per second per account (Bling: 3). 0 disables the limit.
    pub rate_limit_per_sec: u32,
    /// Requests per day per account (Bling: 120,000). 0 disables the quota.
    pub daily_quota: u64,
    /// Calls to `/oauth/token` allowed per client in 60 s before it is blocked (Bling: 20).
    /// 0 disables the guard.
    pub token_calls_per_minute: u32,
    /// How long a client stays blocked after exceeding `token_calls_per_minute` (Bling: 60 min).
    pub token_block: Duration,
    /// Bling's IP blocks (300 errors or 600 requests in 10 s → 10 min). On by default.
    pub ip_blocks: IpBlockConfig,
    /// JWT-only mode (after Bling's announced cut-off): opaque tokens are neither issued nor
    /// accepted, and API calls must carry `enable-jwt: 1`. Off by default, as in Bling today.
    pub jwt_only: bool,
    /// Faults for every account without its own.
    pub faults: FaultConfig,
    /// Seed of the fault generator: the same seed and the same calls give the same faults.
    pub seed: u64,
    /// Default situação ids of accounts created on demand.
    pub situacao_ids: SituacaoIds,
    /// Accounts to create at start.
    pub accounts: Vec<AccountConfig>,
}

impl SandboxConfig {
    pub const DEMO_CLIENT_ID: &'static str = "bling-ledger-demo";
    pub const DEMO_CLIENT_SECRET: &'static str = "bling-ledger-demo-secret";
    pub const DEMO_REDIRECT_URI: &'static str = "http://127.0.0.1:8080/oauth/callback";

    /// Reads `BLING_SANDBOX_*` environment variables over the defaults (see docs/sandbox.md).
    pub fn from_env() -> Result<SandboxConfig, SandboxError> {
        fn var<T: std::str::FromStr>(name: &str) -> Result<Option<T>, SandboxError>
        where
            T::Err: std::fmt::Display,
        {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|e: T::Err| SandboxError::Env {
                        name: name.to_string(),
                        reason: e.to_string(),
                    }),
                Err(_) => Ok(None),
            }
        }
        let mut c = SandboxConfig::default();
        let id: Option<String> = var("BLING_SANDBOX_CLIENT_ID")?;
        let secret: Option<String> = var("BLING_SANDBOX_CLIENT_SECRET")?;
        let redirect: Option<String> = var("BLING_SANDBOX_REDIRECT_URI")?;
        if id.is_some() || secret.is_some() || redirect.is_some() {
            c.clients = vec![ClientApp {
                client_id: id.unwrap_or_else(|| Self::DEMO_CLIENT_ID.into()),
                client_secret: secret.unwrap_or_else(|| Self::DEMO_CLIENT_SECRET.into()),
                redirect_uri: redirect.unwrap_or_else(|| Self::DEMO_REDIRECT_URI.into()),
            }];
        }
        if let Some(s) = var::<u64>("BLING_SANDBOX_ACCESS_TTL_SECS")? {
            c.access_ttl = Duration::from_secs(s);
        }
        if let Some(s) = var::<u64>("BLING_SANDBOX_REFRESH_TTL_SECS")? {
            c.refresh_ttl = Duration::from_secs(s);
        }
        if let Some(n) = var("BLING_SANDBOX_RATE_LIMIT")? {
            c.rate_limit_per_sec = n;
        }
        if let Some(n) = var("BLING_SANDBOX_DAILY_QUOTA")? {
            c.daily_quota = n;
        }
        if let Some(n) = var("BLING_SANDBOX_TOKEN_CALLS_PER_MINUTE")? {
            c.token_calls_per_minute = n;
        }
        if let Some(s) = var::<u64>("BLING_SANDBOX_TOKEN_BLOCK_SECS")? {
            c.token_block = Duration::from_secs(s);
        }
        if let Some(n) = var("BLING_SANDBOX_IP_BLOCK_ERRORS")? {
            c.ip_blocks.errors = n;
        }
        if let Some(n) = var("BLING_SANDBOX_IP_BLOCK_REQUESTS")? {
            c.ip_blocks.requests = n;
        }
        if let Some(s) = var::<u64>("BLING_SANDBOX_IP_BLOCK_SECS")? {
            c.ip_blocks.block = Duration::from_secs(s);
        }
        if let Some(on) = var::<u8>("BLING_SANDBOX_JWT_ONLY")? {
            c.jwt_only = on != 0;
        }
        if let Some(n) = var("BLING_SANDBOX_SEED")? {
            c.seed = n;
        }
        if let Ok(json) = std::env::var("BLING_SANDBOX_FAULTS") {
            c.faults = serde_json::from_str(&json).map_err(|e| SandboxError::Env {
                name: "BLING_SANDBOX_FAULTS".into(),
                reason: e.to_string(),
            })?;
        }
        Ok(c)
    }

    pub(crate) fn validate(&self) -> Result<(), SandboxError> {
        if self.clients.is_empty() {
            return Err(SandboxError::InvalidConfig(
                "no client app registered".into(),
            ));
        }
        for (i, c) in self.clients.iter().enumerate() {
            if c.client_id.is_empty() || c.client_id.contains(':') {
                return Err(SandboxError::InvalidConfig(format!(
                    "client_id {:?} must be non-empty and free of ':'",
                    c.client_id
                )));
            }
            if self.clients[..i].iter().any(|o| o.client_id == c.client_id) {
                return Err(SandboxError::InvalidConfig(format!(
                    "client_id {:?} registered twice",
                    c.client_id
                )));
            }
        }
        if !self.ip_blocks.is_off()
            && (self.ip_blocks.window.is_zero() || self.ip_blocks.block.is_zero())
        {
            return Err(SandboxError::InvalidConfig(
                "ip_blocks: window and block must be longer than zero".into(),
            ));
        }
        self.faults.validate()?;
        for a in &self.accounts {
            if a.name.is_empty() {
                return Err(SandboxError::InvalidConfig(
                    "account with an empty name".into(),
                ));
            }
            if let Some(f) = &a.faults {
                f.validate()?;
            }
        }
        Ok(())
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            clients: vec![ClientApp {
                client_id: Self::DEMO_CLIENT_ID.into(),
                client_secret: Self::DEMO_CLIENT_SECRET.into(),
                redirect_uri: Self::DEMO_REDIRECT_URI.into(),
            }],
            access_ttl: Duration::from_secs(6 * 3600),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            code_ttl: Duration::from_secs(60),
            scope: "98308 98309 98310 98313 98314 98315 98316 5990556".into(),
            rate_limit_per_sec: 3,
            daily_quota: 120_000,
            token_calls_per_minute: 20,
            token_block: Duration::from_secs(3600),
            ip_blocks: IpBlockConfig::default(),
            jwt_only: false,
            faults: FaultConfig::default(),
            seed: 0,
            situacao_ids: SituacaoIds::default(),
            accounts: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The only test touching BLING_SANDBOX_* variables, so setting them cannot race.
    #[test]
    fn from_env_overrides_defaults() {
        std::env::set_var("BLING_SANDBOX_RATE_LIMIT", "7");
        std::env::set_var(
            "BLING_SANDBOX_FAULTS",
            r#"{"rules":[{"method":"POST","error_rate":0.5}]}"#,
        );
        std::env::set_var("BLING_SANDBOX_ACCESS_TTL_SECS", "90");
        let c = SandboxConfig::from_env().expect("valid env");
        assert_eq!(c.rate_limit_per_sec, 7);
        assert_eq!(c.access_ttl, Duration::from_secs(90));
        assert_eq!(c.faults.rules[0].method.as_deref(), Some("POST"));
        assert_eq!(c.daily_quota, 120_000);
        std::env::set_var("BLING_SANDBOX_RATE_LIMIT", "lots");
        assert!(matches!(
            SandboxConfig::from_env(),
            Err(SandboxError::Env { .. })
        ));
        for v in [
            "BLING_SANDBOX_RATE_LIMIT",
            "BLING_SANDBOX_FAULTS",
            "BLING_SANDBOX_ACCESS_TTL_SECS",
        ] {
            std::env::remove_var(v);
        }
    }

    #[test]
    fn invalid_configs_are_refused() {
        let no_clients = SandboxConfig {
            clients: vec![],
            ..SandboxConfig::default()
        };
        assert!(no_clients.validate().is_err());
        let mut twice = SandboxConfig::default();
        twice.clients.push(twice.clients[0].clone());
        assert!(twice.validate().is_err());
        let bad_rate = SandboxConfig {
            faults: FaultConfig::none()
                .with_rule(crate::sandbox::faults::FaultRule::any().error_rate(1.5)),
            ..SandboxConfig::default()
        };
        assert!(bad_rate.validate().is_err());
        assert!(SandboxConfig::default().validate().is_ok());
    }
}
