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

impl ServeArgs {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        let ServeArgs {
            listen,
            tokens,
            bling,
            seal,
            checkpoint_interval_secs,
        } = self;
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
        let server = Server::start_sealed(settings, listener, seal)
            .await
            .with_context(|| format!("starting on {}", redact_url(&database.database_url)))?;
        eprintln!("bling-ledger listening on http://{}", server.addr);
        server.run_until_signal().await?;
        Ok(())
    }
}
