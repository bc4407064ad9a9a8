//! `verify FILE --checkpoint C --public-key K`: proves that an export holds what the log
//! sealed at write time, not only that the file is intact.
//!
//! With a checkpoint `C` signed by `K`:
//! - **an export of every tenant**: each record's `seal` is recomputed from the record and the
//!   seal before it (the manifest's `seal.prev` for the first), over consecutive positions; the
//!   record at `C.position` must carry exactly `C.head_hash`. SHA-256 chains forward, so every
//!   record from the first to `C.position` is then the one sealed.
//! - **one tenant's export**: the same over `tenant_seal` (the tenant's own chain, from
//!   `seal.tenant_prev`); its last record at or below `C.position` is that tenant's head at `C`,
//!   and the manifest's Merkle proof must lead from that head to `C.tenant_root`. The other
//!   tenants' events are neither needed nor revealed.
//!
//! A redacted export cannot be checked this way: its records no longer hold the sealed bytes
//! (its own chain still verifies, as always).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use serde_json::{Map, Value};

use super::checkpoint::{Checkpoint, PublicKey};
use super::manifest::Manifest;
use super::merkle;
use super::seal;
use super::verify::Records;
use super::{AuditError, Format};

/// The ten keys the seal covers.
const SEALED_KEYS: [&str; 10] = [
    "aggregate_id",
    "aggregate_type",
    "event_type",
    "event_version",
    "metadata",
    "payload",
    "position",
    "recorded_at",
    "sequence",
    "tenant",
];

/// The canonical bytes of an export record: the same as the sealed event's.
pub fn canonical_record(record: &Map<String, Value>) -> String {
    let sealed: Map<String, Value> = SEALED_KEYS
        .iter()
        .map(|k| {
            (
                k.to_string(),
                record.get(*k).cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    super::canonical::to_canonical_string(&Value::Object(sealed))
}

/// What the check established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealReport {
    pub checkpoint_position: i64,
    /// Records whose seal was recomputed.
    pub records: u64,
    /// Records proven by the checkpoint (all those at or below its position).
    pub proven: u64,
}

fn fail(problem: impl Into<String>) -> AuditError {
    AuditError::invalid("checkpoint", problem)
}

/// Checks the export at `path` (whose manifest is `manifest`) against checkpoint `c`.
pub fn verify_against_checkpoint(
    path: &Path,
    manifest: &Manifest,
    c: &Checkpoint,
    key: &PublicKey,
) -> Result<SealReport, AuditError> {
    c.verify(key).map_err(fail)?;
    let Some(sealed) = &manifest.seal else {
        return Err(fail(
            "the manifest has no seal: the export predates the sealed log",
        ));
    };
    if manifest.redacted {
        return Err(fail(
            "a redacted export no longer holds the sealed bytes; check an unredacted export \
             against checkpoints (this one verifies against its own chain)",
        ));
    }
    let tenant = manifest.filters.tenant.as_deref();
    let (key_name, mut prev) = match tenant {
        None => ("seal", sealed.prev.clone()),
        Some(_) => ("tenant_seal", sealed.tenant_prev.clone()),
    };
    let file = File::open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let format = Format::parse(&manifest.format)?;
    let mut records = Records::new(BufReader::new(file), format);
    let mut report = SealReport {
        checkpoint_position: c.position,
        records: 0,
        proven: 0,
    };
    let mut last_position: Option<i64> = None;
    // The last record at or below the checkpoint: (position, its link).
    let mut at_checkpoint: Option<(i64, String)> = None;
    while let Some((line, record)) = records.next() {
        let record = record.map_err(|p| fail(format!("line {line}: {p}")))?;
        let position = record
            .get("position")
            .and_then(Value::as_i64)
            .ok_or_else(|| fail(format!("line {line}: no position")))?;
        if tenant.is_none() {
            if let Some(last) = last_position {
                if position != last + 1 {
                    return Err(fail(format!(
                        "line {line}: position {position} follows {last}: the global seal cannot \
                         be followed across a hole (export every tenant without a time range, or \
                         one tenant)"
                    )));
                }
            }
        }
        let stored = record
            .get(key_name)
            .and_then(Value::as_str)
            .ok_or_else(|| fail(format!("line {line}: the record carries no {key_name}")))?
            .to_string();
        let Some(before) = prev.as_deref() else {
            return Err(fail(format!(
                "the manifest has no link before the first record ({key_name})"
            )));
        };
        let computed = seal::link(before, &canonical_record(&record));
        if computed != stored {
            return Err(fail(format!(
                "line {line}: the record at position {position} is not what was sealed: it \
                 hashes to {computed}, the log sealed {stored}"
            )));
        }
        report.records += 1;
        if position <= c.position {
            report.proven += 1;
            at_checkpoint = Some((position, stored.clone()));
        }
        prev = Some(stored);
        last_position = Some(position);
    }
    match tenant {
        None => match at_checkpoint {
            Some((position, link)) if position == c.position => {
                if link != c.head_hash {
                    return Err(fail(format!(
                        "at position {position} the export's seal is {link}, the checkpoint \
                         signed {}: the log was rewritten before this export",
                        c.head_hash
                    )));
                }
            }
            _ => {
                return Err(fail(format!(
                    "checkpoint {} is outside the export's positions {}..{}",
                    c.position,
                    manifest.first_position.unwrap_or(0),
                    manifest.last_position.unwrap_or(0)
                )))
            }
        },
        Some(tenant) => {
            let index = sealed
                .checkpoints
                .iter()
                .position(|x| x.position == c.position && x.signature == c.signature)
                .ok_or_else(|| {
                    fail(format!(
                        "the manifest carries no proof for checkpoint {}",
                        c.position
                    ))
                })?;
            let proof = sealed.proofs.get(index).cloned().flatten().ok_or_else(|| {
                fail(format!(
                    "no Merkle proof of {tenant} in checkpoint {}",
                    c.position
                ))
            })?;
            let Some((position, link)) = at_checkpoint else {
                return Err(fail(format!(
                    "the export has no record at or below {}",
                    c.position
                )));
            };
            if proof.head.tenant != tenant
                || proof.head.position != position
                || proof.head.hash != link
            {
                return Err(fail(format!(
                    "the tenant's head at checkpoint {} is {}@{}, the export ends there with \
                     {link}@{position}: the log was rewritten before this export",
                    c.position, proof.head.hash, proof.head.position
                )));
            }
            if merkle::root_from_proof(&proof).as_deref() != Some(c.tenant_root.as_str()) {
                return Err(fail(format!(
                    "the Merkle proof of {tenant}'s head {link}@{position} does not lead to the \
                     signed root {}: the tenant chains were rewritten before this export",
                    c.tenant_root
                )));
            }
        }
    }
    Ok(report)
}

/// Reads a checkpoint file: one checkpoint as JSON (from `bling-ledger checkpoint` or an
/// element of GET /v1/audit/checkpoints).
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint, AuditError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        AuditError::invalid(
            "checkpoint",
            format!("{} is not a checkpoint: {e}", path.display()),
        )
    })
}
