//! Reading the log for an export, page by page, and writing it as JSONL or CSV.

use std::io::Write;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde_json::{Map, Value};

use super::manifest::{Manifest, ManifestFilters, ManifestRange, ManifestRedaction, ManifestSeal};
use super::merkle::{self, TenantHead};
use super::record::{self, GENESIS};
use super::redact::{self, Redactor, SaltSource};
use super::{format_bound, AuditError, ExportQuery, Format, TOOL};
use crate::store::events;
use crate::store::events::seals::{self, SealedEvent};
use crate::store::log::{self, LogFilter, RecordedEvent};
use crate::store::personal::{self, Keys};
use crate::store::{signed_checkpoints, Db, StoreError};

/// Events read from the log per query.
pub const PAGE_SIZE: i64 = 1_000;

/// What the export has produced so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub first_position: Option<i64>,
    pub last_position: Option<i64>,
    pub first_hash: Option<String>,
    pub last_hash: Option<String>,
    pub contiguous: bool,
    pub secrets_removed: u64,
}

/// A position in the log and the chain built so far; yields sealed records page by page.
pub struct ExportCursor {
    db: Db,
    query: ExportQuery,
    filter: LogFilter,
    /// The last position read (the next page starts after it).
    after: i64,
    /// Where reading began (for progress).
    start: i64,
    /// The last position that can belong to the export.
    last: i64,
    upto: i64,
    prev_hash: String,
    redactor: Option<Redactor>,
    summary: Summary,
    done: bool,
}

impl ExportCursor {
    /// Pins the export to the log head (or `query.upto`) and finds where in the log its time
    /// range lies.
    pub async fn open(db: &Db, query: &ExportQuery) -> Result<ExportCursor, AuditError> {
        let head = log::head_position(db).await?;
        let upto = query.upto.map_or(head, |u| u.min(head));
        let (first, last) = position_bounds(db, query, upto).await?;
        let (after, last, done) = match (first, last) {
            (Some(first), Some(last)) => (first - 1, last, false),
            _ => (upto, upto, true),
        };
        Ok(ExportCursor {
            db: db.clone(),
            filter: LogFilter {
                tenant: query.tenant.as_ref().map(|t| t.as_str().to_string()),
                aggregate_type: None,
                aggregate_id: None,
            },
            query: query.clone(),
            after,
            start: after,
            last,
            upto,
            prev_hash: GENESIS.to_string(),
            redactor: query.redact.clone().map(Redactor::new),
            summary: Summary {
                contiguous: true,
                ..Summary::default()
            },
            done,
        })
    }

    /// The next sealed records (never an empty page), or `None` when the export is complete.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Map<String, Value>>>, AuditError> {
        while !self.done {
            let events = seals::read_sealed_of(
                &self.db,
                self.after,
                self.query.page_size.max(1),
                self.filter.tenant.as_deref(),
            )
            .await?;
            if events.is_empty() {
                self.done = true;
                break;
            }
            // The customers' keys this page needs, to show each profile beside its ciphertext.
            let needed = events.iter().map(|s| {
                let e = &s.event;
                (
                    e.aggregate_type.as_str(),
                    e.aggregate_id.as_str(),
                    e.event_type.as_str(),
                )
            });
            let keys: Result<Keys, String> = match personal::keys_for(&self.db, needed).await {
                Ok(keys) => Ok(keys),
                // No master key here, or a key that does not open: the export goes on with the
                // sealed bytes, and says so on each profile it cannot show.
                Err(StoreError::Corrupt(why)) => Err(why),
                Err(other) => return Err(other.into()),
            };
            let mut page = Vec::with_capacity(events.len());
            for sealed in events {
                let event = &sealed.event;
                if event.position > self.last {
                    self.done = true;
                    break;
                }
                self.after = event.position;
                if !self.in_range(&event.recorded_at) {
                    continue;
                }
                page.push(self.seal(&sealed, &keys));
            }
            if self.after >= self.last {
                self.done = true;
            }
            if !page.is_empty() {
                return Ok(Some(page));
            }
        }
        Ok(None)
    }

    fn in_range(&self, at: &DateTime<Utc>) -> bool {
        self.query.from.is_none_or(|from| *at >= from) && self.query.to.is_none_or(|to| *at < to)
    }

    fn seal(&mut self, sealed: &SealedEvent, keys: &Result<Keys, String>) -> Map<String, Value> {
        let event = &sealed.event;
        let mut record = record::record_of(event);
        let link = |h: &Option<String>| h.clone().map(Value::from).unwrap_or(Value::Null);
        record.insert("seal".into(), link(&sealed.hash));
        record.insert("tenant_seal".into(), link(&sealed.tenant_hash));
        if let Some(personal) = annotation(event, keys) {
            record.insert(record::PERSONAL.into(), personal);
        }
        for key in ["payload", "metadata"] {
            if let Some(value) = record.get_mut(key) {
                self.summary.secrets_removed += redact::remove_secrets(value);
            }
        }
        if let Some(redactor) = &mut self.redactor {
            redactor.redact_record(&mut record);
        }
        let hash = record::seal(&self.prev_hash, &mut record);
        let s = &mut self.summary;
        if let Some(last) = s.last_position {
            if event.position != last + 1 {
                s.contiguous = false;
            }
        }
        s.records += 1;
        s.first_position.get_or_insert(event.position);
        s.last_position = Some(event.position);
        s.first_hash.get_or_insert_with(|| hash.clone());
        s.last_hash = Some(hash.clone());
        self.prev_hash = hash;
        record
    }

    /// (positions read, positions to read), for a progress bar.
    pub fn progress(&self) -> (u64, u64) {
        let total = (self.last - self.start).max(0) as u64;
        let done = (self.after - self.start).clamp(0, self.last - self.start) as u64;
        (if self.done { total } else { done }, total)
    }

    /// The last log position the export may include (the log head when it was opened).
    pub fn upto(&self) -> i64 {
        self.upto
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The manifest of what has been produced (complete once [`Self::next_page`] returned
    /// `None`).
    pub fn manifest(&self) -> Manifest {
        let s = &self.summary;
        Manifest {
            tool: TOOL.to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at: format_bound(&Utc::now()),
            format: self.query.format.as_str().to_string(),
            range: ManifestRange {
                from: self.query.from.as_ref().map(format_bound),
                to: self.query.to.as_ref().map(format_bound),
                upto_position: self.upto,
            },
            filters: ManifestFilters {
                tenant: self.query.tenant.as_ref().map(|t| t.as_str().to_string()),
            },
            records: s.records,
            first_position: s.first_position,
            last_position: s.last_position,
            first_hash: s.first_hash.clone(),
            last_hash: s.last_hash.clone(),
            genesis: GENESIS.to_string(),
            positions_contiguous: s.contiguous,
            chain: "hash = hex(sha256(prev_hash || canonical_json(record without \"hash\"))); \
                    canonical JSON: keys sorted by UTF-8 bytes, no white space"
                .to_string(),
            redacted: self.redactor.is_some(),
            redaction: self.redactor.as_ref().map(|r| ManifestRedaction {
                method: redact::METHOD.to_string(),
                digest: redact::DIGEST_FORMAT.to_string(),
                salt: match r.salt_source() {
                    SaltSource::Random => "random per export, not recorded",
                    SaltSource::Supplied => "supplied by the operator, not recorded",
                }
                .to_string(),
                scope: "payload: name, tax_id (CPF/CNPJ), email, phone, mobile, address (all but \
                        state); Bling call paths: personal query values; all other strings, \
                        aggregate ids and metadata: CPF/CNPJ, e-mails, phone numbers and values \
                        seen in profiles earlier in the export"
                    .to_string(),
                values_redacted: r.values_redacted,
            }),
            secrets_removed: s.secrets_removed,
            seal: None,
        }
    }

    /// [`Self::manifest`] with its seal: the links before the first record, the checkpoints
    /// the export covers and, for a tenant, the Merkle proofs of its head in each.
    pub async fn sealed_manifest(&self) -> Result<Manifest, AuditError> {
        let mut manifest = self.manifest();
        let tenant = self.filter.tenant.as_deref();
        let (prev, tenant_prev, checkpoints) = match self.summary.first_position {
            None => (None, None, Vec::new()),
            Some(first) => {
                let (prev, tenant_prev) = seals::links_before(&self.db, first, tenant).await?;
                // A tenant's head at a checkpoint after its last record is still that record.
                let last = match tenant {
                    Some(_) => self.upto,
                    None => self.summary.last_position.unwrap_or(first),
                };
                let checkpoints = signed_checkpoints::between(&self.db, first, last, 1_000).await?;
                (prev, tenant_prev, checkpoints)
            }
        };
        let mut proofs = Vec::new();
        if let Some(tenant) = tenant {
            for c in &checkpoints {
                // The leaves as signed: the other tenants' rows as they are now do not matter.
                let heads: Vec<TenantHead> =
                    match signed_checkpoints::heads(&self.db, c.position).await? {
                        Some(json) => serde_json::from_str(&json).map_err(|e| {
                            StoreError::Corrupt(format!("checkpoint {} heads: {e}", c.position))
                        })?,
                        None => Vec::new(),
                    };
                proofs.push(merkle::prove(&heads, tenant));
            }
        }
        manifest.seal = Some(ManifestSeal {
            rule: "seal = hex(sha256(previous seal || canonical_json(the record's position, \
                   recorded_at, tenant, aggregate_type, aggregate_id, sequence, event_type, \
                   event_version, payload, metadata))) in global position order; tenant_seal the \
                   same over the tenant's events only"
                .to_string(),
            prev,
            tenant_prev: tenant_prev.filter(|_| tenant.is_some()),
            checkpoints,
            proofs,
        });
        Ok(manifest)
    }
}

/// The `personal` annotation of an event's record (see [`record`]): its profile in clear, the
/// erased mark, or why it cannot be shown; `None` for an event without one.
fn annotation(event: &RecordedEvent, keys: &Result<Keys, String>) -> Option<Value> {
    let (kind, id, ty) = (
        event.aggregate_type.as_str(),
        event.aggregate_id.as_str(),
        event.event_type.as_str(),
    );
    let shown = match keys {
        Ok(keys) => keys
            .annotation(kind, id, ty, &event.payload)
            .map_err(|e| e.to_string()),
        Err(why) => Err(why.clone()),
    };
    match shown {
        Ok(annotation) => annotation,
        Err(why) if personal::stored_encrypted(kind, ty, &event.payload) => {
            tracing::warn!(position = event.position, error = %why, "audit export: a profile cannot be shown in clear");
            Some(serde_json::json!({ "unreadable": why }))
        }
        Err(_) => None,
    }
}

/// The first and last positions (at most `upto`) that can fall in the query's range, or
/// `None` when none does. On PostgreSQL `recorded_at` is the writing transaction's start, so it
/// does not grow with the position: every event in between is still read and filtered exactly.
async fn position_bounds(
    db: &Db,
    query: &ExportQuery,
    upto: i64,
) -> Result<(Option<i64>, Option<i64>), AuditError> {
    let tenant = query.tenant.as_ref().map(|t| t.as_str());
    Ok(events::position_bounds(db, upto, query.from, query.to, tenant).await?)
}

/// Appends the text of a page in `format`.
pub fn render_page(format: Format, page: &[Map<String, Value>], out: &mut String) {
    for record in page {
        match format {
            Format::Jsonl => record::jsonl_line(record, out),
            Format::Csv => record::csv_row(record, out),
        }
    }
}

/// Writes the export to `out`, calling `progress(done, total)` after each page; returns the
/// manifest.
pub async fn export_to_writer<W: Write>(
    db: &Db,
    query: &ExportQuery,
    out: &mut W,
    mut progress: impl FnMut(u64, u64),
) -> Result<Manifest, AuditError> {
    let mut cursor = ExportCursor::open(db, query).await?;
    let mut text = String::with_capacity(64 * 1024);
    if query.format == Format::Csv {
        record::csv_header(&mut text);
    }
    let (done, total) = cursor.progress();
    progress(done, total);
    while let Some(page) = cursor.next_page().await? {
        render_page(query.format, &page, &mut text);
        out.write_all(text.as_bytes())?;
        text.clear();
        let (done, total) = cursor.progress();
        progress(done, total);
    }
    out.write_all(text.as_bytes())?;
    out.flush()?;
    let (done, total) = cursor.progress();
    progress(done, total);
    cursor.sealed_manifest().await
}

/// Computes the manifest of an export without writing it (reads the whole range).
pub async fn compute_manifest(db: &Db, query: &ExportQuery) -> Result<Manifest, AuditError> {
    let mut cursor = ExportCursor::open(db, query).await?;
    while cursor.next_page().await?.is_some() {}
    cursor.sealed_manifest().await
}

/// The export as a stream of byte chunks, one per page (for an HTTP body). The cursor is
/// opened by the caller, so that bad input and an unreachable database fail before the
/// response starts; an error in the middle ends the stream with an error (the client sees a
/// truncated body, which its verification then reports).
pub fn export_stream(
    cursor: ExportCursor,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let header = if cursor.query.format == Format::Csv {
        let mut text = String::new();
        record::csv_header(&mut text);
        Some(text)
    } else {
        None
    };
    futures::stream::unfold(
        (cursor, header, false),
        |(mut cursor, header, failed)| async move {
            if failed {
                return None;
            }
            if let Some(header) = header {
                return Some((Ok(Bytes::from(header)), (cursor, None, false)));
            }
            match cursor.next_page().await {
                Ok(Some(page)) => {
                    let mut text = String::with_capacity(page.len() * 1024);
                    render_page(cursor.query.format, &page, &mut text);
                    Some((Ok(Bytes::from(text)), (cursor, None, false)))
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "audit export failed while streaming");
                    Some((
                        Err(std::io::Error::other(e.to_string())),
                        (cursor, None, true),
                    ))
                }
            }
        },
    )
}
