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
    file: std::path::PathBuf,
    /// The manifest to check against.
    #[arg(short = 'm', long)]
    manifest: Option<std::path::PathBuf>,
}

impl VerifyArgs {
    pub fn run(self) -> Result<()> {
        let report = crate::audit::cli::verify(&self.file, self.manifest.as_deref())?;
        print!("{report}");
        if !report.ok() {
            bail!("{} does not verify", self.file.display());
        }
        Ok(())
    }
}
