//! `token new`: an API token, shown once, and the line for the tokens file (its digest only).

use anyhow::{bail, Result};
use clap::Subcommand;

use crate::auth::{new_token, Role};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token: prints the token once, and the line to add to the tokens file.
    New {
        /// A name for the caller, recorded as the actor of its events.
        #[arg(long)]
        name: String,
        /// ingest, support, auditor or admin.
        #[arg(long)]
        role: String,
        /// The tenant it may act on, or `*` for all.
        #[arg(long)]
        tenant: String,
    },
}

impl TokenCommand {
    pub fn run(self) -> Result<()> {
        let TokenCommand::New { name, role, tenant } = self;
        let Some(role) = Role::parse(&role) else {
            bail!("--role must be one of ingest, support, auditor, admin (got {role:?})");
        };
        if tenant != "*" && aggregates::ids::TenantId::parse(&tenant).is_err() {
            bail!("--tenant must be a tenant id (letters, digits, . _ -) or *");
        }
        let (token, entry) = new_token(&name, role, &tenant);
        println!("token (shown once, give it to the caller): {token}");
        println!("tokens file entry: {}", serde_json::to_string(&entry)?);
        Ok(())
    }
}
