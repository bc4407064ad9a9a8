//! The manifest: what an export holds and the head of its chain, written beside it.

use serde::{Deserialize, Serialize};

/// The manifest of one export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `bling-ledger`.
    pub tool: String,
    /// The version of the tool that wrote the export.
    pub tool_version: String,
    pub created_at: String,
    /// `jsonl` or `csv`.
    pub format: String,
    pub range: ManifestRange,
    pub filters: ManifestFilters,
    /// Records in the export.
    pub records: u64,
    pub first_position: Option<i64>,
    pub last_position: Option<i64>,
    /// The first record's hash.
    pub first_hash: Option<String>,
    /// The last record's hash: the head of the chain.
    pub last_hash: Option<String>,
    /// The first record's `prev_hash`.
    pub genesis: String,
    /// Whether the exported positions follow each other without a hole (true for an export of
    /// the whole log or a stretch of it); the verifier then names a missing record a gap.
    pub positions_contiguous: bool,
    /// How each record's hash is made.
    pub chain: String,
    pub redacted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<ManifestRedaction>,
    /// Values removed because their key names a secret (should always be 0).
    pub secrets_removed: u64,
    /// What ties the records to the log sealed at write time (absent in exports made before
    /// the seal existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<ManifestSeal>,
}

/// The seal of an export: each record carries `seal` and `tenant_seal`, the links the log
/// stored when the event got its position ([`crate::audit::seal`]); with the links before the
/// first record, and the signed checkpoints that fall in the range, `verify FILE --checkpoint`
/// proves the records are what was sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSeal {
    /// How `seal` and `tenant_seal` are made.
    pub rule: String,
    /// The global link just before the first record (64 zeros before position 1).
    pub prev: Option<String>,
    /// For a tenant export: that tenant chain's link just before the first record.
    pub tenant_prev: Option<String>,
    /// The signed checkpoints whose position the export covers.
    pub checkpoints: Vec<crate::audit::checkpoint::Checkpoint>,
    /// For a tenant export: per checkpoint (same order), the Merkle proof of the tenant's head.
    pub proofs: Vec<Option<crate::audit::merkle::InclusionProof>>,
}

/// The time range on `recorded_at` (from inclusive, to exclusive, RFC 3339 UTC; `null` is
/// unbounded) and the log head the export was pinned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRange {
    pub from: Option<String>,
    pub to: Option<String>,
    /// Only events at or below this global position (the log head when the export began):
    /// the same query with the same `upto_position` always selects the same events.
    pub upto_position: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFilters {
    /// `null` for every tenant.
    pub tenant: Option<String>,
}

/// How personal data was replaced (never the salt).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRedaction {
    /// `hmac-sha256`.
    pub method: String,
    /// What a replaced value looks like.
    pub digest: String,
    /// Where the salt came from; it is not recorded anywhere.
    pub salt: String,
    /// What is replaced.
    pub scope: String,
    /// How many values were replaced.
    pub values_redacted: u64,
}

/// The path of the manifest written beside `export`: `EXPORT.manifest.json`.
pub fn default_path(export: &std::path::Path) -> std::path::PathBuf {
    let mut name = export.as_os_str().to_owned();
    name.push(".manifest.json");
    std::path::PathBuf::from(name)
}
