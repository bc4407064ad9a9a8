//! `export` and `verify`: what auditors receive and how they check it offline.

use anyhow::{bail, Result};
use clap::Args;

use super::open;
use crate::config::DatabaseArgs;

#[derive(Debug, Args)]
pub struct ExportCommand {
    /// Start of the range on recorded_at, inclusive: RFC 3339 or a date (UTC).
    #[arg(long)]
    from: Option<String>,
    /// End of the range, exclusive: RFC 3339, or a date (that whole day included).
    #[arg(long)]
    to: Option<String>,
    /// Only this tenant's events.
    #[arg(long)]
    tenant: Option<String>,
    /// jsonl or csv.
    #[arg(long, default_value = "jsonl")]
    format: String,
    /// Replace CPF/CNPJ, names, e-mails, phones and addresses with salted digests.
    #[arg(long)]
    redact_pii: bool,
    /// The redaction salt (default: random, never written anywhere).
    #[arg(long, requires = "redact_pii")]
    salt: Option<String>,
    /// The export file.
    #[arg(short = 'o', long)]
    output: std::path::PathBuf,
    /// Where to write the manifest (default: OUTPUT.manifest.json).
    #[arg(short = 'm', long)]
    manifest: Option<std::path::PathBuf>,
}

impl ExportCommand {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        let args = crate::audit::cli::ExportArgs {
            from: self.from,
            to: self.to,
            tenant: self.tenant,
            format: self.format,
            redact_pii: self.redact_pii,
            salt: self.salt,
            output: self.output,
            manifest: self.manifest,
        };
        args.check()?;
        let db = open(database).await?;
        let outcome = crate::audit::cli::export(&db, &args).await?;
        print!("{}", outcome.summary());
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The export file (.jsonl or .csv).
    #[arg(required_unless_present = "database", conflicts_with = "database")]
    file: Option<std::path::PathBuf>,
    /// The manifest to check against.
    #[arg(short = 'm', long)]
    manifest: Option<std::path::PathBuf>,
    /// Verify the sealed log in the database instead of a file: recompute both chains, name
    /// the first event altered, deleted, inserted or reordered, and check every checkpoint.
    #[arg(long)]
    database: bool,
    /// The checkpoints' public key (base64, from `bling-ledger key public` or GET
    /// /v1/audit/public-key); by default the configured signing key's.
    #[arg(long)]
    public_key: Option<String>,
    /// Prove the export holds what the log sealed: a checkpoint (JSON, from `bling-ledger
    /// checkpoint` or GET /v1/audit/checkpoints) signed by --public-key.
    #[arg(long, requires = "public_key", requires = "file")]
    checkpoint: Option<std::path::PathBuf>,
    #[command(flatten)]
    seal: crate::config::SealArgs,
}

impl VerifyArgs {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        let public = match &self.public_key {
            Some(text) => Some(crate::audit::checkpoint::PublicKey::from_base64(text)?),
            None => None,
        };
        let Some(file) = &self.file else {
            let db = open(database).await?;
            let public = match public {
                Some(p) => Some(p),
                None => self
                    .seal
                    .signing_key(&database.database_url)?
                    .map(|k| k.public_key()),
            };
            let report = crate::audit::verify_db::verify_database(&db, public.as_ref()).await?;
            print!("{report}");
            if !report.ok() {
                bail!("the sealed log does not verify");
            }
            return Ok(());
        };
        let report = crate::audit::cli::verify(file, self.manifest.as_deref())?;
        print!("{report}");
        if !report.ok() {
            bail!("{} does not verify", file.display());
        }
        if let (Some(checkpoint), Some(public)) = (&self.checkpoint, &public) {
            use crate::audit::verify_sealed::{read_checkpoint, verify_against_checkpoint};
            let manifest_path = self
                .manifest
                .clone()
                .unwrap_or_else(|| crate::audit::manifest::default_path(file));
            let manifest = crate::audit::verify::read_manifest(&manifest_path)?;
            let c = read_checkpoint(checkpoint)?;
            let sealed = verify_against_checkpoint(file, &manifest, &c, public)
                .map_err(|e| anyhow::anyhow!("{} is not what was sealed: {e}", file.display()))?;
            println!(
                "  sealed: {} record(s) recomputed; the {} at or below position {} are what the \
                 log sealed (checkpoint signed {} by key {})",
                sealed.records, sealed.proven, c.position, c.signed_at, c.key_id
            );
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// List the stored checkpoints (JSON lines) instead of signing one.
    #[arg(long)]
    list: bool,
    #[command(flatten)]
    seal: crate::config::SealArgs,
}

impl CheckpointArgs {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        let db = open(database).await?;
        if self.list {
            let all = crate::store::signed_checkpoints::between(&db, 0, i64::MAX, i64::MAX).await?;
            for c in all {
                println!("{}", serde_json::to_string(&c)?);
            }
            return Ok(());
        }
        let Some(key) = self.seal.signing_key(&database.database_url)? else {
            bail!("no signing key: set BLING_LEDGER_SIGNING_KEY or BLING_LEDGER_SIGNING_KEY_FILE");
        };
        match crate::audit::checkpointer::take_checkpoint(&db, &key).await? {
            Some(c) => println!("{}", serde_json::to_string_pretty(&c)?),
            None => println!("the log is empty: nothing to sign"),
        }
        Ok(())
    }
}
