//! `forget --tenant T --customer C --reason R`: LGPD erasure of one customer
//! ([`crate::erasure::forget`]), run by an operator. Prints the report as JSON; an unknown
//! customer is an error (non-zero exit).

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::config::DatabaseArgs;
use crate::ledger::{Actor, CommandContext, Ledger};

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The tenant (shop) the customer belongs to.
    #[arg(long)]
    pub tenant: String,
    /// The customer's id, as the pet-shop system registered it.
    #[arg(long)]
    pub customer: String,
    /// Why (a ticket or request reference; recorded with the erasure, so no personal data).
    #[arg(long, default_value = "LGPD erasure request")]
    pub reason: String,
    /// Who runs it (recorded as the erasure's actor, `admin:<operator>`).
    #[arg(long, env = "USER", default_value = "cli")]
    pub operator: String,
}

impl ForgetArgs {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        let tenant = aggregates::ids::TenantId::parse(&self.tenant)
            .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
        if aggregates::ids::CustomerId::parse(&self.customer).is_err() {
            bail!("--customer: not a valid customer id ({:?})", self.customer);
        }
        if self.reason.trim().is_empty() || self.reason.chars().count() > 200 {
            bail!("--reason: 1 to 200 characters");
        }
        let db = super::open(database).await?;
        let ledger = Ledger::new(db);
        let ctx = CommandContext::new(
            tenant,
            format!("forget-{}", uuid::Uuid::new_v4().simple()),
            Actor::Admin(self.operator.clone()),
        );
        let report = crate::erasure::forget(&ledger, &ctx, &self.customer, self.reason.trim())
            .await
            .with_context(|| format!("forget {}/{}", self.tenant, self.customer))?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        if report.events_in_clear > 0 {
            eprintln!(
                "warning: {} sealed event(s) of this customer were written before encryption: \
                 every reader now sees them erased, but their stored bytes still hold the values \
                 (rewriting them would break the seals; see README, \"LGPD erasure\")",
                report.events_in_clear
            );
        }
        eprintln!("note: {}", crate::erasure::BLING_NOTE);
        Ok(())
    }
}
