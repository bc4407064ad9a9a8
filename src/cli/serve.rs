//! `serve`: the HTTP API, the support console, the sync worker, the projections and the token
//! renewal, until Ctrl-C.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::redact_url;
use crate::config::{ephemeral_admin, BlingArgs, DatabaseArgs, TokenArgs};
use crate::server::{Server, Settings};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BLING_LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    tokens: TokenArgs,
    #[command(flatten)]
    bling: BlingArgs,
}

impl ServeArgs {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        let ServeArgs {
            listen,
            tokens,
            bling,
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
        let server = Server::start(settings, listener)
            .await
            .with_context(|| format!("starting on {}", redact_url(&database.database_url)))?;
        eprintln!("bling-ledger listening on http://{}", server.addr);
        server.run_until_signal().await?;
        Ok(())
    }
}
