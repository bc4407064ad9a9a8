//! `migrate` and `events`: the database and the event log in global order.

use anyhow::{Context, Result};
use clap::Args;

use super::{connect, open};
use crate::config::DatabaseArgs;
use crate::store::log::{self, LogFilter};
use crate::store::Db;

/// Applies pending migrations and says on which backend.
pub async fn migrate(database: &DatabaseArgs) -> Result<()> {
    let db = connect(database).await?;
    db.migrate().await.context("migrating")?;
    println!("migrations applied ({})", db.backend_name());
    Ok(())
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this tenant's events.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this aggregate type (Customer, Invoice, BlingConnection).
    #[arg(long)]
    aggregate_type: Option<String>,
    /// Only this aggregate (e.g. `shop-1/inv-42`).
    #[arg(long)]
    aggregate_id: Option<String>,
    /// Start after this global position.
    #[arg(long, default_value_t = 0)]
    after: i64,
    /// Print at most this many events.
    #[arg(long)]
    limit: Option<u64>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

impl EventsArgs {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        let db = open(database).await?;
        let filter = LogFilter {
            tenant: self.tenant,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
        };
        print_events(&db, &filter, self.after, self.limit, self.json).await
    }
}

async fn print_events(
    db: &Db,
    filter: &LogFilter,
    mut after: i64,
    limit: Option<u64>,
    json: bool,
) -> Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    if !json {
        writeln!(
            out,
            "{:>8}  {:<27}  {:<12}  {:<40}  {:<22}  actor",
            "position", "recorded_at", "tenant", "aggregate#sequence", "event"
        )?;
    }
    loop {
        let page = log::read_from(db, after, 1000, filter).await?;
        if page.is_empty() {
            break;
        }
        for event in page {
            after = event.position;
            if limit.is_some_and(|l| printed >= l) {
                out.flush()?;
                return Ok(());
            }
            printed += 1;
            if json {
                writeln!(out, "{}", serde_json::to_string(&event)?)?;
            } else {
                let actor = event
                    .metadata
                    .get("actor")
                    .and_then(|a| a.as_str())
                    .unwrap_or("");
                writeln!(
                    out,
                    "{:>8}  {:<27}  {:<12}  {:<40}  {:<22}  {}",
                    event.position,
                    event
                        .recorded_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    event.tenant().unwrap_or("-"),
                    format!(
                        "{}/{}#{}",
                        event.aggregate_type, event.aggregate_id, event.sequence
                    ),
                    event.event_type,
                    actor
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
