//! `serve`: the HTTP API, the support console, the sync worker, the projections and the token
//! renewal, until Ctrl-C.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::redact_url;
use crate::config::{ephemeral_admin, BlingArgs, DatabaseArgs, TokenArgs};
use crate::server::{SealSettings, Server, Settings};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BLING_LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    tokens: TokenArgs,
    #[command(flatten)]
    bling: BlingArgs,
    #[command(flatten)]
    notify: NotifyArgs,
    #[command(flatten)]
    seal: crate::config::SealArgs,
    /// Sign a checkpoint of the sealed log every this many seconds (0: only on demand, with
    /// `bling-ledger checkpoint`).
    #[arg(
        long,
        env = "BLING_LEDGER_CHECKPOINT_INTERVAL_SECS",
        default_value_t = 600
    )]
    checkpoint_interval_secs: u64,
}

/// Outbound notifications and reconnect links.
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// The ledger's address as shop owners' browsers reach it, for reconnect links
    /// (default: http://<listen address>).
    #[arg(long, env = "BLING_LEDGER_PUBLIC_URL")]
    public_url: Option<String>,
    /// How long a reconnect link stays valid, in hours.
    #[arg(long, env = "BLING_LEDGER_RECONNECT_LINK_HOURS", default_value_t = 168)]
    reconnect_link_hours: u64,
    /// Disable a notification endpoint after its attempts have all failed for this many hours.
    #[arg(
        long,
        env = "BLING_LEDGER_NOTIFY_DISABLE_AFTER_HOURS",
        default_value_t = 120
    )]
    notify_disable_after_hours: u64,
}

impl NotifyArgs {
    fn settings(&self) -> Result<crate::notify::NotifySettings> {
        if let Some(url) = &self.public_url {
            let parsed = reqwest::Url::parse(url)
                .with_context(|| format!("BLING_LEDGER_PUBLIC_URL {url:?} is not a URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                bail!("BLING_LEDGER_PUBLIC_URL must be an http:// or https:// URL");
            }
        }
        if self.reconnect_link_hours == 0 {
            bail!("BLING_LEDGER_RECONNECT_LINK_HOURS must be at least 1");
        }
        if self.notify_disable_after_hours == 0 {
            bail!("BLING_LEDGER_NOTIFY_DISABLE_AFTER_HOURS must be at least 1");
        }
        let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
        let mut settings = crate::notify::NotifySettings {
            public_url: self.public_url.clone(),
            link_lifetime: hours(self.reconnect_link_hours),
            ..Default::default()
        };
        settings.delivery.disable_after = hours(self.notify_disable_after_hours);
        Ok(settings)
    }
}

impl ServeArgs {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        let ServeArgs {
            listen,
            tokens,
            bling,
            notify,
            seal,
            checkpoint_interval_secs,
        } = self;
        let notify = notify.settings()?;
        let mut registry = tokens.load()?;
        if registry.is_empty() {
            if database.is_postgres() {
                bail!(
                    "no API tokens configured: set BLING_LEDGER_TOKENS_FILE (create entries with \
                     `bling-ledger token new`)"
                );
            }
            let (token, with_admin) = ephemeral_admin(registry);
            registry = with_admin;
            eprintln!(
                "No API tokens configured; this run accepts the admin token:\n  {token}\n\
                 (configure BLING_LEDGER_TOKENS_FILE for anything but a local trial)"
            );
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        // Customers' personal data is encrypted under keys this key wraps; an ingest-only
        // service (no Bling app) needs it too. It is installed for the database (by its
        // identity), which the server's own pool then shares.
        match bling.key_ring(&database.database_url) {
            Ok(ring) => {
                let db = crate::store::Db::connect(&database.database_url, 1)
                    .await
                    .with_context(|| {
                        format!(
                            "connecting to {}",
                            super::redact_url(&database.database_url)
                        )
                    })?;
                crate::store::personal::install_master_keys(&db, &ring);
                db.close().await;
            }
            Err(crate::config::BlingConfigError::MissingKey) => tracing::warn!(
                "no encryption key configured (BLING_LEDGER_ENCRYPTION_KEY): customers' personal \
                 data is stored in clear, and `forget` can only hide it from readers"
            ),
            Err(e) => return Err(e.into()),
        }
        let settings = Settings {
            database_url: database.database_url.clone(),
            max_connections: database.max_connections,
            tokens: registry,
            auth: bling.auth_settings(&database.database_url)?,
            sync: bling.sync_config(),
        };
        let key = seal.signing_key(&database.database_url)?;
        if key.is_none() {
            tracing::warn!(
                "no checkpoint signing key (BLING_LEDGER_SIGNING_KEY): the log is sealed, but no \
                 checkpoint is signed"
            );
        }
        let seal = SealSettings {
            checkpoint_interval: (checkpoint_interval_secs > 0 && key.is_some())
                .then(|| std::time::Duration::from_secs(checkpoint_interval_secs)),
            key: key.map(std::sync::Arc::new),
        };
        let server = Server::start_full(settings, listener, notify, seal)
            .await
            .with_context(|| format!("starting on {}", redact_url(&database.database_url)))?;
        eprintln!("bling-ledger listening on http://{}", server.addr);
        server.run_until_signal().await?;
        Ok(())
    }
}
