//! `replay`: queue a tenant's failed, blocked or parked sync work again.

use anyhow::Result;
use clap::Args;

use super::open;
use crate::config::DatabaseArgs;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[arg(long)]
    tenant: String,
    /// Only this invoice (and its customer's contato).
    #[arg(long)]
    invoice: Option<String>,
}

impl ReplayArgs {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        let tenant = aggregates::ids::TenantId::parse(&self.tenant)
            .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
        if let Some(i) = &self.invoice {
            aggregates::ids::InvoiceId::parse(i).map_err(|e| anyhow::anyhow!("--invoice: {e}"))?;
        }
        let db = open(database).await?;
        let n = crate::sync::queue::replay(
            &db,
            tenant.as_str(),
            self.invoice.as_deref(),
            "replay requested from the CLI",
        )
        .await?;
        println!(
            "{n} job(s) queued again for {tenant}; a running `serve` picks them up within a second"
        );
        Ok(())
    }
}
