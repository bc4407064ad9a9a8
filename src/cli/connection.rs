//! `connect`, `status`, `key new|rotate`: the shops' Bling connections and the key that
//! encrypts their tokens.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use super::open;
use crate::config::{BlingArgs, DatabaseArgs};

#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[arg(long)]
    tenant: String,
    #[command(flatten)]
    bling: BlingArgs,
}

impl ConnectArgs {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        let tenant = aggregates::ids::TenantId::parse(&self.tenant)
            .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
        let Some(settings) = self.bling.auth_settings(&database.database_url)? else {
            bail!("no Bling app configured: set BLING_CLIENT_ID and BLING_CLIENT_SECRET");
        };
        let db = open(database).await?;
        let ledger = crate::ledger::Ledger::new(db.clone());
        let auth = crate::oauth::BlingAuth::new(db, ledger, settings)?;
        let url = auth
            .connector
            .start(&tenant, crate::ledger::Actor::Support("cli".into()))
            .await?;
        println!(
            "Open this URL in the shop's browser (valid {} minutes, once):",
            auth.settings.state_ttl.as_secs() / 60
        );
        println!("{url}");
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long)]
    tenant: Option<String>,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    bling: BlingArgs,
}

impl StatusArgs {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        let StatusArgs {
            tenant,
            json,
            bling,
        } = self;
        let db = open(database).await?;
        let ledger = crate::ledger::Ledger::new(db.clone());
        let creds = bling
            .key_ring(&database.database_url)
            .ok()
            .map(|ring| crate::oauth::credentials::CredentialStore::new(db.clone(), ring));
        let tenants: Vec<String> = match tenant {
            Some(t) => vec![t],
            None => crate::store::log::aggregate_ids(&db, "BlingConnection").await?,
        };
        if tenants.is_empty() {
            println!("no tenant has a Bling connection yet (bling-ledger connect --tenant T)");
        }
        if let (Some(creds), false) = (&creds, json) {
            let budget =
                crate::oauth::budget::TokenBudget::new(db.clone(), bling.token_calls_per_minute);
            let d = crate::oauth::tokens::RenewalDemand::measure(creds, &budget).await?;
            println!(
                "token renewals: {} due now, {} within the hour; the budget allows {} an hour{}",
                d.due_now,
                d.due_next_hour,
                d.renewals_per_hour,
                if d.exceeds_budget() {
                    " -- MORE THAN ONE EGRESS IP'S BUDGET: tokens will lapse (README, Limits of a fleet)"
                } else {
                    ""
                }
            );
        }
        for raw in tenants {
            let tenant = aggregates::ids::TenantId::parse(&raw)
                .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
            let s = crate::oauth::connection_status(&ledger, creds.as_ref(), &tenant).await?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                let expires = match (s.access_expires_at, s.expires_in_seconds) {
                    (Some(at), Some(secs)) => format!("{at} (in {}m)", secs / 60),
                    (Some(at), None) => at.to_string(),
                    _ => "-".into(),
                };
                println!("{:<16} {:<22} expires {expires}", s.tenant, s.state);
                if let Some(r) = &s.last_refresh_at {
                    println!("{:<16} last refresh {r}", "");
                }
                if let Some(e) = &s.last_error {
                    println!("{:<16} last error: {e}", "");
                }
                if let Some(r) = &s.revoked {
                    println!(
                        "{:<16} revoked: {} answered {} {} ({})",
                        "", r.call, r.status, r.error_type, r.message
                    );
                }
                if let Some(until) = &s.daily_quota_exhausted_until {
                    println!(
                        "{:<16} daily quota of Bling requests spent: no calls until {until}",
                        ""
                    );
                }
                if let Some(f) = &s.last_authorization_failure {
                    println!(
                        "{:<16} last authorization failed: {} answered {} {} ({})",
                        "", f.call, f.status, f.error_type, f.message
                    );
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print a new random AES-256 key (base64) for BLING_LEDGER_ENCRYPTION_KEY.
    New,
    /// Re-encrypt every stored token under the current key. Set the new key as
    /// BLING_LEDGER_ENCRYPTION_KEY and the old one as BLING_LEDGER_PREVIOUS_ENCRYPTION_KEY,
    /// run this, then remove the previous key.
    Rotate {
        #[command(flatten)]
        bling: Box<BlingArgs>,
    },
    /// Print a new random Ed25519 checkpoint signing key (base64) for BLING_LEDGER_SIGNING_KEY.
    NewSigning,
    /// Print the public key that verifies the checkpoints (base64) and its id: what an auditor
    /// needs to check them offline (also at GET /v1/audit/public-key).
    Public {
        #[command(flatten)]
        seal: crate::config::SealArgs,
    },
}

impl KeyCommand {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        match self {
            KeyCommand::New => {
                println!("{}", crate::oauth::crypto::EncryptionKey::generate_base64());
                Ok(())
            }
            KeyCommand::Rotate { bling } => {
                let db = open(database).await?;
                let ring = bling.key_ring(&database.database_url)?;
                let store = crate::oauth::credentials::CredentialStore::new(db, ring.clone());
                let changed = store.reencrypt_all().await?;
                println!(
                    "re-encrypted the tokens of {changed} tenant(s) under key {}",
                    ring.current_id()
                );
                Ok(())
            }
            KeyCommand::NewSigning => {
                println!(
                    "{}",
                    crate::audit::checkpoint::SigningKey::generate_base64()
                );
                Ok(())
            }
            KeyCommand::Public { seal } => {
                let Some(key) = seal.signing_key(&database.database_url)? else {
                    anyhow::bail!(
                        "no signing key: set BLING_LEDGER_SIGNING_KEY or BLING_LEDGER_SIGNING_KEY_FILE"
                    );
                };
                let public = key.public_key();
                println!("{}", public.base64());
                eprintln!("key id {} (Ed25519)", public.key_id());
                Ok(())
            }
        }
    }
}
