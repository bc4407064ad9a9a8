//! `history`, `failures`, `projections status|rebuild`: what support reads.

use anyhow::Result;
use clap::{Args, Subcommand};

use super::open;
use crate::config::DatabaseArgs;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    invoice: String,
    /// The HTTP API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl HistoryArgs {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        let db = open(database).await?;
        let out =
            crate::projections::cli::history(&db, &self.tenant, &self.invoice, self.json).await?;
        print!("{out}");
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct FailuresArgs {
    #[arg(long)]
    tenant: String,
    /// Only this cause (divergent_customer_record, order_refused, account_setup,
    /// authorization_expired, authorization_revoked, bling_rejected, bling_unavailable,
    /// rate_limited).
    #[arg(long)]
    cause: Option<String>,
    /// From this time (RFC 3339 or a date, UTC), inclusive.
    #[arg(long)]
    since: Option<String>,
    /// Until this time, exclusive (a date includes that whole day).
    #[arg(long)]
    until: Option<String>,
    /// At most this many failures.
    #[arg(long, default_value_t = 200)]
    limit: i64,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

impl FailuresArgs {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        let db = open(database).await?;
        let out = crate::projections::cli::failures(
            &db,
            &self.tenant,
            self.cause.as_deref(),
            self.since.as_deref(),
            self.until.as_deref(),
            self.limit,
            self.json,
        )
        .await?;
        print!("{out}");
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Checkpoint, log head and lag of each projection.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Empty a projection (all when no NAME) and replay the whole log into it.
    Rebuild {
        /// invoice_sync, timeline, failures, connections or customers.
        name: Option<String>,
    },
}

impl ProjectionsCommand {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        let db = open(database).await?;
        let out = match self {
            ProjectionsCommand::Status { json } => {
                crate::projections::cli::status(&db, json).await?
            }
            ProjectionsCommand::Rebuild { name } => {
                crate::projections::cli::rebuild(&db, name.as_deref()).await?
            }
        };
        print!("{out}");
        Ok(())
    }
}
