//! The `export` and `verify` subcommands: arguments in, files and a summary out.

use std::fs::File;
use std::io::{BufWriter, IsTerminal};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use super::manifest::default_path;
use super::redact::Salt;
use super::verify::{verify_file, Report};
use super::{export_to_writer, AuditError, ExportQuery, Manifest};
use crate::store::Db;

/// `bling-ledger export` arguments, as given.
#[derive(Debug, Clone)]
pub struct ExportArgs {
    pub from: Option<String>,
    pub to: Option<String>,
    pub tenant: Option<String>,
    pub format: String,
    pub redact_pii: bool,
    pub salt: Option<String>,
    pub output: PathBuf,
    pub manifest: Option<PathBuf>,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportOutcome {
    pub output: PathBuf,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
}

impl ExportArgs {
    /// Checks the arguments without touching the database; the error names the flag.
    pub fn check(&self) -> Result<(), AuditError> {
        self.query().map(|_| ())
    }

    /// The query these arguments ask for, or the first bad argument (named as its flag).
    pub fn query(&self) -> Result<ExportQuery, AuditError> {
        self.parse().map_err(|e| match e {
            AuditError::Invalid { field, problem } => AuditError::Invalid {
                field: match field {
                    "from" => "--from",
                    "to" => "--to",
                    "tenant" => "--tenant",
                    "format" => "--format",
                    "salt" => "--salt",
                    "manifest" => "--manifest",
                    other => other,
                },
                problem,
            },
            other => other,
        })
    }

    fn parse(&self) -> Result<ExportQuery, AuditError> {
        let mut query = ExportQuery::parse(
            self.from.as_deref(),
            self.to.as_deref(),
            self.tenant.as_deref(),
            Some(&self.format),
        )?;
        query.redact = match (&self.salt, self.redact_pii) {
            (Some(_), false) => {
                return Err(AuditError::invalid(
                    "salt",
                    "only makes sense with --redact-pii",
                ))
            }
            (Some(s), true) if s.len() < 16 => {
                return Err(AuditError::invalid(
                    "salt",
                    "must be at least 16 characters (a short salt lets anyone hash every CPF)",
                ))
            }
            (Some(s), true) => Some(Salt::supplied(s)),
            (None, true) => Some(Salt::random()),
            (None, false) => None,
        };
        Ok(query)
    }
}

/// Writes the export and its manifest; the export goes to `FILE.partial` first and is renamed
/// when complete, so an interrupted run never leaves a file that looks whole. Shows a progress
/// bar on stderr when it is a terminal.
pub async fn export(db: &Db, args: &ExportArgs) -> Result<ExportOutcome, AuditError> {
    let query = args.query()?;
    let manifest_path = args
        .manifest
        .clone()
        .unwrap_or_else(|| default_path(&args.output));
    if manifest_path == args.output {
        return Err(AuditError::invalid(
            "--manifest",
            "must differ from the export file",
        ));
    }
    let mut partial = args.output.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = File::create(&partial)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", partial.display())))?;
    let mut out = BufWriter::with_capacity(256 * 1024, file);
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} exporting [{bar:40}] {pos}/{len} log positions {msg} ({eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let result = export_to_writer(db, &query, &mut out, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await;
    bar.finish_and_clear();
    let manifest = match result {
        Ok(manifest) => manifest,
        Err(e) => {
            drop(out);
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    drop(out);
    std::fs::rename(&partial, &args.output)?;
    let mut text = serde_json::to_string_pretty(&manifest).map_err(std::io::Error::other)?;
    text.push('\n');
    std::fs::write(&manifest_path, text)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", manifest_path.display())))?;
    Ok(ExportOutcome {
        output: args.output.clone(),
        manifest_path,
        manifest,
    })
}

impl ExportOutcome {
    /// The summary `bling-ledger export` prints.
    pub fn summary(&self) -> String {
        let m = &self.manifest;
        let range = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        format!(
            "exported {} record(s) to {} ({}{})\n  range {} .. {} (log head {}), tenant {}\n  \
             positions {}..{}\n  head {}\n  manifest {}\n",
            m.records,
            self.output.display(),
            m.format,
            if m.redacted {
                ", personal data redacted"
            } else {
                ""
            },
            range(&m.range.from),
            range(&m.range.to),
            m.range.upto_position,
            m.filters.tenant.as_deref().unwrap_or("all"),
            m.first_position.map_or("-".into(), |p| p.to_string()),
            m.last_position.map_or("-".into(), |p| p.to_string()),
            m.last_hash.as_deref().unwrap_or("- (empty export)"),
            self.manifest_path.display(),
        )
    }
}

/// Verifies `file` against `manifest`, or against `FILE.manifest.json` when that exists and
/// no manifest is named.
pub fn verify(file: &Path, manifest: Option<&Path>) -> Result<Report, AuditError> {
    let manifest = match manifest {
        Some(m) => Some(m.to_path_buf()),
        None => Some(default_path(file)).filter(|p| p.exists()),
    };
    verify_file(file, manifest.as_deref())
}
