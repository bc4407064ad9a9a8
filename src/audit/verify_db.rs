//! `bling-ledger verify --database`: recompute both chains of the sealed log from the events
//! table and name the first event altered, deleted, inserted or reordered; then check every
//! signed checkpoint (signature, and the recomputed chain at its position).
//!
//! # How a break is named
//! Events are read in position order; each is checked against the *stored* link of the event
//! before it, so the first bad row is found exactly and the rest of the chain stays usable as
//! evidence. At the first event whose link does not recompute, one event of look-ahead decides
//! which change explains the stored links (each test is a recomputation, never a guess):
//! - a hole in the positions: **deleted** (the missing positions are named);
//! - a row never sealed, in the middle of sealed ones: **inserted**;
//! - the next event links on from this row's stored link: this row's content was **altered**
//!   (its seal is intact, its bytes are not);
//! - this row and the next each match the other's position: **reordered** (swapped);
//! - the next event links on from the previous row *at this position*: this row was
//!   **inserted** before it (and the rest shifted up);
//! - the next event links on from this row at one position higher: an event before this one was
//!   **deleted** and the rest renumbered;
//! - otherwise: **reordered** (this row was moved here from elsewhere).
//!
//! The tenant chains are recomputed alongside: with the global chain intact, a tenant link that
//! does not recompute means that column alone was changed (**altered**).
//!
//! # How it is fast
//! Pages of positions are read ahead with PostgreSQL's binary `COPY` (SQLite: a query), their
//! JSON columns as stored text. Each page, on whichever core is free, computes every event's
//! canonical bytes straight from that text ([`super::canonical_text`], no `Value` built) and
//! checks every link it can inside the page: an event's global link against the stored link
//! of the event before it, its tenant link against the stored tenant link of its chain's
//! previous event in the page (`link_within_page`). One task then chains the pages in
//! order, hashing only the first event of each page and of each chain in it, and using the
//! page's verdicts for the rest. That is the same computation it would do itself, because it
//! only reaches an event when every event before it passed, so its previous link *is* the
//! stored one the page used. Nothing is trusted that the sequential check would not trust.
//!
//! # What the chain alone cannot show
//! Someone who rewrites the log *and recomputes every link after it* leaves a chain that is
//! consistent again; only a signed checkpoint taken before catches that (its head no longer
//! matches). And an event appended at the head by hand is sealed like any other. So the
//! guarantee is: nothing sealed before the latest checkpoint changed without this check saying
//! where.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::canonical_text::Canonicalizer;
use super::checkpoint::{Checkpoint, PublicKey};
use super::merkle::{self, TenantHead};
use super::seal::{self, Canonical, GENESIS};
use super::AuditError;
use crate::store::events::seals::{self, StoredEvent};
use crate::store::{log, signed_checkpoints, Db, StoreError};

/// What kind of change breaks the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    Altered,
    Deleted,
    Inserted,
    Reordered,
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tamper::Altered => "altered",
            Tamper::Deleted => "deleted",
            Tamper::Inserted => "inserted",
            Tamper::Reordered => "reordered",
        })
    }
}

/// The first event that breaks a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    pub kind: Tamper,
    /// The position where the break shows (for a deletion, the first missing position).
    pub position: i64,
    /// The event found there, when there is one: `Type/id#sequence`.
    pub event: Option<String>,
    pub detail: String,
}

/// A checkpoint that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointFailure {
    pub position: i64,
    pub problem: String,
}

/// The result of `verify --database`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DbReport {
    pub events: u64,
    pub head_position: i64,
    pub head_hash: Option<String>,
    pub tenants: usize,
    pub first_break: Option<ChainBreak>,
    pub checkpoints_checked: u64,
    pub checkpoint_failures: Vec<CheckpointFailure>,
    /// Whether checkpoint signatures were checked (a public key was given).
    pub signatures_checked: bool,
    pub seconds: f64,
}

impl DbReport {
    pub fn ok(&self) -> bool {
        self.first_break.is_none() && self.checkpoint_failures.is_empty()
    }
}

impl fmt::Display for DbReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ok() {
            writeln!(f, "OK: the sealed log verifies")?;
        } else {
            writeln!(f, "FAILED: the sealed log does not verify")?;
        }
        if let Some(b) = &self.first_break {
            writeln!(
                f,
                "  first break: {} at position {}{}: {}",
                b.kind,
                b.position,
                b.event
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default(),
                b.detail
            )?;
        }
        for c in &self.checkpoint_failures {
            writeln!(f, "  checkpoint {}: {}", c.position, c.problem)?;
        }
        writeln!(
            f,
            "  {} events checked, {} tenant chains; head {} {}",
            self.events,
            self.tenants,
            self.head_position,
            self.head_hash.as_deref().unwrap_or("-")
        )?;
        writeln!(
            f,
            "  {} checkpoints checked{}",
            self.checkpoints_checked,
            if self.signatures_checked {
                ", signatures verified"
            } else {
                " (no public key given: signatures not checked)"
            }
        )?;
        if self.seconds > 0.0 {
            writeln!(
                f,
                "  {:.2} s, {:.0} events/s",
                self.seconds,
                self.events as f64 / self.seconds
            )?;
        }
        Ok(())
    }
}

/// One event as the check needs it: what it is, its canonical bytes, its stored links.
#[derive(Debug, Clone)]
pub struct CheckedEvent {
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub canonical: Canonical,
    pub hash: Option<String>,
    pub tenant_hash: Option<String>,
    /// Whether `hash` links on from the stored `hash` of the event read just before it, when
    /// the reader could tell ([`link_within_page`]); else the chain computes it.
    linked: Option<bool>,
    /// The same for `tenant_hash` and the stored `tenant_hash` of the event of its chain read
    /// last before it.
    tenant_linked: Option<bool>,
}

impl CheckedEvent {
    /// `event`'s canonical bytes, computed with `json` (which keeps its buffers).
    pub fn of(
        event: StoredEvent<'_>,
        json: &mut Canonicalizer,
    ) -> Result<CheckedEvent, StoreError> {
        let canonical =
            seal::canonical_stored(&event, json, String::with_capacity(1024)).map_err(|e| {
                StoreError::Corrupt(format!("event at position {}: {e}", event.position))
            })?;
        Ok(CheckedEvent {
            position: event.position,
            aggregate_type: event.aggregate_type.to_string(),
            aggregate_id: event.aggregate_id.to_string(),
            sequence: event.sequence,
            canonical,
            hash: event.hash.map(str::to_string),
            tenant_hash: event.tenant_hash.map(str::to_string),
            linked: None,
            tenant_linked: None,
        })
    }

    fn name(&self) -> String {
        format!(
            "{}/{}#{}",
            self.aggregate_type, self.aggregate_id, self.sequence
        )
    }
}

/// The chains recomputed event by event (one event of look-ahead to name a break).
pub struct ChainCheck {
    prev_position: i64,
    prev_hash: String,
    tenants: HashMap<String, (i64, String)>,
    pending: Option<CheckedEvent>,
    /// Checkpoints still to reach, by position (descending, so the next one is last).
    checkpoints: Vec<Checkpoint>,
    pub events: u64,
    pub first_break: Option<ChainBreak>,
    pub checkpoint_failures: Vec<CheckpointFailure>,
    pub checkpoints_checked: u64,
}

impl ChainCheck {
    pub fn new(mut checkpoints: Vec<Checkpoint>) -> ChainCheck {
        checkpoints.sort_by_key(|c| std::cmp::Reverse(c.position));
        ChainCheck {
            prev_position: 0,
            prev_hash: GENESIS.to_string(),
            tenants: HashMap::new(),
            pending: None,
            checkpoints,
            events: 0,
            first_break: None,
            checkpoint_failures: Vec::new(),
            checkpoints_checked: 0,
        }
    }

    pub fn broken(&self) -> bool {
        self.first_break.is_some()
    }

    /// Feeds the next event in position order.
    pub fn push(&mut self, event: CheckedEvent) {
        if self.broken() {
            return;
        }
        if let Some(pending) = self.pending.take() {
            self.check(pending, Some(&event));
        }
        if !self.broken() {
            self.pending = Some(event);
        }
    }

    /// Ends the input.
    pub fn finish(&mut self) {
        if let Some(pending) = self.pending.take() {
            if !self.broken() {
                self.check(pending, None);
            }
        }
        // Checkpoints beyond the head: the log lost its end.
        if !self.broken() {
            while let Some(c) = self.checkpoints.pop() {
                if c.position > self.prev_position {
                    self.first_break = Some(ChainBreak {
                        kind: Tamper::Deleted,
                        position: self.prev_position + 1,
                        event: None,
                        detail: format!(
                            "the log ends at {} but checkpoint {} was signed at position {}: \
                             events at the end were deleted",
                            self.prev_position, c.signed_at, c.position
                        ),
                    });
                    self.checkpoints.clear();
                }
            }
        }
    }

    pub fn head(&self) -> (i64, &str) {
        (self.prev_position, &self.prev_hash)
    }

    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    fn fail(&mut self, kind: Tamper, position: i64, event: Option<&CheckedEvent>, detail: String) {
        self.first_break = Some(ChainBreak {
            kind,
            position,
            event: event.map(CheckedEvent::name),
            detail,
        });
    }

    fn check(&mut self, row: CheckedEvent, next: Option<&CheckedEvent>) {
        let position = row.position;
        let expected = self.prev_position + 1;
        if position > expected {
            let missing = if position - 1 == expected {
                format!("position {expected} is missing")
            } else {
                format!("positions {expected}..{} are missing", position - 1)
            };
            self.fail(
                Tamper::Deleted,
                expected,
                None,
                format!("{missing} (the next event present is at {position})"),
            );
            return;
        }
        let Some(stored) = row.hash.as_deref() else {
            self.fail(
                Tamper::Inserted,
                position,
                Some(&row),
                "this row was never sealed, yet sealed events follow it: it was written into \
                 the table by hand"
                    .into(),
            );
            return;
        };
        let text = &row.canonical.text;
        // Precomputed by the reader against the stored link of the row before, which is
        // `prev_hash` here (that row passed).
        let linked = row
            .linked
            .unwrap_or_else(|| seal::links_to(stored, &self.prev_hash, text));
        if !linked {
            let computed = seal::link(&self.prev_hash, text);
            let (kind, detail) = self.classify(&row, stored, &computed, next);
            self.fail(kind, position, Some(&row), detail);
            return;
        }
        // The tenant chain.
        let chain = row.canonical.chain();
        let tenant_prev = self.tenants.get(chain).map_or(GENESIS, |(_, h)| h.as_str());
        let tenant_ok = row.tenant_linked.unwrap_or_else(|| {
            row.tenant_hash
                .as_deref()
                .is_some_and(|t| seal::links_to(t, tenant_prev, text))
        });
        if !tenant_ok {
            let tenant_computed = seal::link(tenant_prev, text);
            let chain = chain.to_string();
            self.fail(
                Tamper::Altered,
                position,
                Some(&row),
                format!(
                    "the tenant chain of {chain:?} breaks here: its link is {}, the event gives \
                     {tenant_computed}; the tenant_hash column was altered",
                    row.tenant_hash.as_deref().unwrap_or("null")
                ),
            );
            return;
        }
        let CheckedEvent {
            hash,
            tenant_hash,
            canonical,
            ..
        } = row;
        let (Some(hash), Some(tenant_hash)) = (hash, tenant_hash) else {
            return; // both checked above
        };
        match self.tenants.get_mut(canonical.chain()) {
            Some(head) => *head = (position, tenant_hash),
            None => {
                self.tenants
                    .insert(canonical.chain().to_string(), (position, tenant_hash));
            }
        }
        self.prev_position = position;
        self.prev_hash = hash;
        self.events += 1;
        self.reach_checkpoints();
    }

    fn classify(
        &self,
        row: &CheckedEvent,
        stored: &str,
        computed: &str,
        next: Option<&CheckedEvent>,
    ) -> (Tamper, String) {
        let position = row.position;
        let Some(next) = next else {
            return (
                Tamper::Altered,
                format!("its content hashes to {computed}, its seal says {stored}"),
            );
        };
        let next_text = &next.canonical.text;
        let next_hash = next.hash.as_deref().unwrap_or("");
        if seal::link(stored, next_text) == next_hash {
            return (
                Tamper::Altered,
                format!(
                    "its content hashes to {computed}, its seal says {stored}, and the next \
                     event links on from the seal: this event's content was changed"
                ),
            );
        }
        let next_here = seal::link(&self.prev_hash, &next.canonical.at_position(position));
        if next_here == next_hash {
            if seal::link(next_hash, &row.canonical.at_position(position + 1)) == stored {
                return (
                    Tamper::Reordered,
                    format!(
                        "this event and the next ({}) were swapped: each matches the other's \
                         position",
                        next.name()
                    ),
                );
            }
            return (
                Tamper::Inserted,
                format!(
                    "the next event ({}) was sealed at position {position}: this one was \
                     inserted before it and the rest shifted",
                    next.name()
                ),
            );
        }
        if seal::link(stored, &next.canonical.at_position(next.position + 1)) == next_hash {
            return (
                Tamper::Deleted,
                format!(
                    "this event was sealed at position {}: the event sealed at {position} was \
                     deleted and the rest renumbered",
                    position + 1
                ),
            );
        }
        (
            Tamper::Reordered,
            format!(
                "its seal {stored} belongs to another position: the event was moved here from \
                 elsewhere"
            ),
        )
    }

    fn reach_checkpoints(&mut self) {
        while let Some(c) = self.checkpoints.last() {
            if c.position > self.prev_position {
                return;
            }
            let c = self.checkpoints.pop().expect("checked above");
            self.checkpoints_checked += 1;
            if c.position < self.prev_position {
                // Only when a position is missing, which the chain reports itself.
                continue;
            }
            if c.head_hash != self.prev_hash {
                self.checkpoint_failures.push(CheckpointFailure {
                    position: c.position,
                    problem: format!(
                        "signed head {} but the log recomputes to {} there: the log before \
                         this position was rewritten (and its links recomputed)",
                        c.head_hash, self.prev_hash
                    ),
                });
                continue;
            }
            let root = merkle::root(&self.tenant_heads());
            if c.tenant_root != root {
                self.checkpoint_failures.push(CheckpointFailure {
                    position: c.position,
                    problem: format!(
                        "signed tenant root {} but the tenant chains give {root}",
                        c.tenant_root
                    ),
                });
            }
        }
    }

    /// Every tenant chain's head so far, sorted as the Merkle tree wants.
    pub fn tenant_heads(&self) -> Vec<TenantHead> {
        let mut heads: Vec<TenantHead> = self
            .tenants
            .iter()
            .map(|(tenant, (position, hash))| TenantHead {
                tenant: tenant.clone(),
                position: *position,
                hash: hash.clone(),
            })
            .collect();
        merkle::sort(&mut heads);
        heads
    }
}

/// Positions read per page. Small enough that a page's rows stay in cache and its memory is
/// reused (20,000 cost 10 % more CPU, measured), large enough that the per-query cost is noise.
const PAGE: i64 = 4_000;

/// Recomputes the sealed log of `db` and checks its checkpoints (signatures too with `key`).
pub async fn verify_database(db: &Db, key: Option<&PublicKey>) -> Result<DbReport, AuditError> {
    // Whatever is still unsealed is sealed first; the time is the verification's alone.
    log::sequence_pending(db).await?;
    let started = std::time::Instant::now();
    let checkpoints = signed_checkpoints::between(db, 0, i64::MAX, i64::MAX).await?;
    let mut report = DbReport {
        signatures_checked: key.is_some(),
        ..DbReport::default()
    };
    if let Some(key) = key {
        for c in &checkpoints {
            if let Err(problem) = c.verify(key) {
                report.checkpoint_failures.push(CheckpointFailure {
                    position: c.position,
                    problem,
                });
            }
        }
    }
    let mut check = ChainCheck::new(checkpoints);
    // Pages by position range, a few read ahead (each canonicalized and linked within itself
    // on whichever core is free, `read_page`) while this task chains the pages in order.
    let head = log::head_position(db).await?;
    let mut in_flight = std::collections::VecDeque::new();
    let mut next = 0i64;
    let spawn = |after: i64| tokio::spawn(read_page(db.clone(), after, after + PAGE));
    while next < head && in_flight.len() < READ_AHEAD {
        in_flight.push_back(spawn(next));
        next += PAGE;
    }
    while let Some(handle) = in_flight.pop_front() {
        let events = handle
            .await
            .map_err(|e| AuditError::Io(std::io::Error::other(e.to_string())))??;
        if next < head {
            in_flight.push_back(spawn(next));
            next += PAGE;
        }
        for event in events {
            check.push(event);
            if check.broken() {
                break;
            }
        }
        if check.broken() {
            for handle in in_flight.drain(..) {
                handle.abort();
            }
        }
    }
    check.finish();
    let (position, hash) = check.head();
    report.events = check.events;
    report.head_position = position;
    report.head_hash = (position > 0).then(|| hash.to_string());
    report.tenants = check.tenant_count();
    report.checkpoints_checked = check.checkpoints_checked;
    report.first_break = check.first_break.take();
    report
        .checkpoint_failures
        .append(&mut check.checkpoint_failures);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Pages read (and canonicalized, and linked within) ahead of the chaining: enough to keep
/// both cores of the development machine busy while the server produces the next ones.
const READ_AHEAD: usize = 4;

/// Reads one page, computes its events' canonical bytes and checks every link it can within
/// the page ([`link_within_page`]); pages run on whichever worker thread is free, so the
/// expensive part runs in parallel while one task chains the pages in order.
async fn read_page(db: Db, after: i64, upto: i64) -> Result<Vec<CheckedEvent>, AuditError> {
    let mut json = Canonicalizer::new();
    let mut events =
        seals::read_stored_range(&db, after, upto, |e| CheckedEvent::of(e, &mut json)).await?;
    link_within_page(&mut events);
    Ok(events)
}

/// Records, for each event after the first of the page, whether its stored global link
/// recomputes from the stored link of the event before it, and, for each event after the
/// first of its tenant chain in the page, the same for the tenant link. [`ChainCheck`] uses
/// these verdicts only where it would compute exactly the same thing: it reaches an event only
/// when every event before it passed, so its previous link *is* the stored one used here.
fn link_within_page(events: &mut [CheckedEvent]) {
    let mut verdicts = Vec::with_capacity(events.len());
    let mut last_of_chain: HashMap<&str, Option<&str>> = HashMap::new();
    let mut prev: Option<&str> = None;
    for e in events.iter() {
        let text = &e.canonical.text;
        let linked = match (prev, e.hash.as_deref()) {
            (Some(prev), Some(stored)) => Some(seal::links_to(stored, prev, text)),
            _ => None,
        };
        let chain = e.canonical.chain();
        let tenant_linked = match last_of_chain.get(chain) {
            Some(Some(prev_t)) => Some(
                e.tenant_hash
                    .as_deref()
                    .is_some_and(|t| seal::links_to(t, prev_t, text)),
            ),
            _ => None,
        };
        last_of_chain.insert(chain, e.tenant_hash.as_deref());
        prev = e.hash.as_deref();
        verdicts.push((linked, tenant_linked));
    }
    for (e, (linked, tenant_linked)) in events.iter_mut().zip(verdicts) {
        e.linked = linked;
        e.tenant_linked = tenant_linked;
    }
}
