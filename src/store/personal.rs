//! Customers' personal data in the log: encrypted per customer on append, decrypted on every
//! load, destroyed by erasure (LGPD), and searched out of every other table on erasure.
//!
//! # In the log
//! The profile of `CustomerRegistered` and `CustomerUpdated` (name, CPF/CNPJ, e-mail, phones,
//! address) is the personal part of the log. On append ([`seal_for_append_pg`],
//! [`seal_for_append_sqlite`]) the store replaces it by `{"encrypted": "pii1.…"}`, encrypted
//! under the customer's data key ([`crate::erasure::data_key`]), made on the customer's first
//! profile and kept in `customer_keys` wrapped by the master key. The seal of the event is
//! computed over that stored form, so destroying the key changes no sealed byte: the chains
//! and every signed checkpoint still verify after an erasure.
//!
//! Every reader of the log goes through [`Keys::open`]: the aggregates' repositories (both
//! backends), the projections' range scan and [`super::log::read_from`] (the sync dispatcher,
//! the notifier, `log`). They see the profile in clear while the key exists, and
//! `{"erased": true}` ([`aggregates::customer::RecordedProfile::Erased`]) once it is destroyed.
//! The audit export is the exception: it carries the stored bytes, so that each record still
//! proves itself against its seal (see the README, "LGPD erasure").
//!
//! # Invariants
//! - a customer's key is made once; after erasure its row stays as a tombstone (no key) and
//!   the store refuses to append a new profile for it (the aggregate refuses first);
//! - no data key is cached across calls: an erasure made by another process takes effect on
//!   this process's next read;
//! - the master key is installed per database ([`install_master_keys`], by [`identity`]: the
//!   server and every CLI command install the configured one when they open the database, the
//!   test stack its test key). Without one, profiles are stored in clear, as before this
//!   module existed, and reading an encrypted one fails loudly rather than showing it erased;
//! - an event written in clear (before encryption, or without a key) reads as erased once its
//!   customer is erased, but its stored bytes still hold the values: rewriting them would break
//!   the seals ([`erase`] reports how many such events the customer has).
//!
//! # Elsewhere
//! [`scrub_tables`] replaces the customer's values in every text and JSON column of every
//! table but the log, `customer_keys`, the seal tables and the migrations' own: the views, the
//! idempotency answers, the sync work, webhook deliveries, notifications. Primary-key columns
//! are not rewritten (they hold ids, not personal values).

use std::collections::HashMap;
use std::sync::RwLock;

use serde_json::Value;

use crate::erasure::data_key::DataKey;
use crate::erasure::values::{PersonalValues, ERASED};
use crate::oauth::crypto::KeyRing;
use crate::sql;
use crate::store::{now_ms, Db, StoreError, Tx};

/// The master key ring of each database this process opened (see the module documentation),
/// by [`identity`].
static MASTER: std::sync::LazyLock<RwLock<HashMap<String, KeyRing>>> =
    std::sync::LazyLock::new(|| RwLock::new(HashMap::new()));

/// Which database a pool is connected to: PostgreSQL's host, port and database, SQLite's file.
/// Two pools on one database share its key; two databases in one process (tests) do not.
pub fn identity(db: &Db) -> String {
    match db {
        Db::Postgres(pool) => pg_identity(pool),
        Db::Sqlite(pool) => sqlite_identity(pool),
    }
}

pub(crate) fn pg_identity(pool: &sqlx::PgPool) -> String {
    let o = pool.connect_options();
    format!(
        "postgres://{}:{}/{}",
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or_default()
    )
}

pub(crate) fn sqlite_identity(pool: &sqlx::SqlitePool) -> String {
    format!("sqlite:{}", pool.connect_options().get_filename().display())
}

/// Makes `ring` the key that wraps `db`'s new data keys; keys installed before for it stay
/// readable.
pub fn install_master_keys(db: &Db, ring: &KeyRing) {
    let mut master = MASTER
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let id = identity(db);
    let merged = match master.get(&id) {
        Some(older) if older.current_id() != ring.current_id() => ring.merged_with(older),
        Some(older) => older.clone(),
        None => ring.clone(),
    };
    master.insert(id, merged);
}

/// Forgets `db`'s master key: profiles appended afterwards are stored in clear. For the
/// benchmarks' baselines only (a reader of profiles encrypted before then would fail).
#[cfg(feature = "dev-tools")]
pub fn uninstall_master_keys(db: &Db) {
    MASTER
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .remove(&identity(db));
}

fn master_keys(identity: &str) -> Option<KeyRing> {
    MASTER
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(identity)
        .cloned()
}

/// The field name under which a personal value is encrypted (part of its associated data).
const PROFILE: &str = "profile";

/// The personal part of an event, if it has one: the profile of a customer's registration or
/// update.
fn profile_slot<'v>(
    aggregate_type: &str,
    event_type: &str,
    payload: &'v mut Value,
) -> Option<&'v mut Value> {
    if aggregate_type != "Customer"
        || !matches!(event_type, "CustomerRegistered" | "CustomerUpdated")
    {
        return None;
    }
    payload.get_mut(event_type)?.get_mut(PROFILE)
}

/// Whether an event of this type carries personal data (so a reader needs its customer's key).
pub fn carries_personal_data(aggregate_type: &str, event_type: &str) -> bool {
    aggregate_type == "Customer" && matches!(event_type, "CustomerRegistered" | "CustomerUpdated")
}

/// Whether the stored payload of an event holds its profile encrypted.
pub fn stored_encrypted(aggregate_type: &str, event_type: &str, payload: &Value) -> bool {
    carries_personal_data(aggregate_type, event_type)
        && payload
            .get(event_type)
            .and_then(|p| p.get(PROFILE))
            .and_then(encrypted_text)
            .is_some()
}

fn encrypted_text(profile: &Value) -> Option<&str> {
    profile.get("encrypted").and_then(Value::as_str)
}

fn erased_mark() -> Value {
    serde_json::json!({"erased": true})
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// The tenant part of a customer stream id (`shop-a/c1` → `shop-a`).
fn tenant_of(stream_id: &str) -> &str {
    stream_id.split('/').next().unwrap_or(stream_id)
}

// ---------------------------------------------------------------------------------------------
// Reading

/// The data keys a batch of events needs, fetched once for the batch (never cached longer).
#[derive(Debug, Default)]
pub struct Keys {
    /// Per customer stream: its key, or `None` once erased. A stream absent here has no row.
    keys: HashMap<String, Option<DataKey>>,
}

/// The streams among `events` whose personal data a reader must open.
fn streams<'a>(events: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> Vec<String> {
    let mut out: Vec<String> = events
        .filter(|(aggregate_type, _, event_type)| carries_personal_data(aggregate_type, event_type))
        .map(|(_, id, _)| id.to_string())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

type KeyRow = (String, Option<String>);

impl Keys {
    fn from_rows(identity: &str, rows: Vec<KeyRow>) -> Result<Keys, StoreError> {
        let master = master_keys(identity);
        let mut keys = HashMap::with_capacity(rows.len());
        for (stream, wrapped) in rows {
            let key = match (wrapped, &master) {
                (None, _) => None,
                (Some(wrapped), Some(master)) => Some(
                    DataKey::unwrap_with(master, &stream, &wrapped)
                        .map_err(|e| corrupt(format!("data key of {stream}: {e}")))?,
                ),
                (Some(_), None) => {
                    return Err(corrupt(format!(
                        "{stream} has encrypted personal data and no master key is configured \
                         (BLING_LEDGER_ENCRYPTION_KEY) to read it"
                    )))
                }
            };
            keys.insert(stream, key);
        }
        Ok(Keys { keys })
    }

    /// Replaces the stored personal part of one event by what a reader sees: the profile in
    /// clear, or the erased mark.
    pub fn open(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        payload: &mut Value,
    ) -> Result<(), StoreError> {
        let Some(profile) = profile_slot(aggregate_type, event_type, payload) else {
            return Ok(());
        };
        let state = self.keys.get(aggregate_id);
        match (encrypted_text(profile), state) {
            (Some(text), Some(Some(key))) => {
                let clear = key
                    .decrypt(aggregate_id, PROFILE, text)
                    .map_err(|e| corrupt(format!("profile of {aggregate_id}: {e}")))?;
                *profile = serde_json::from_str(&clear)
                    .map_err(|e| corrupt(format!("profile of {aggregate_id}: {e}")))?;
            }
            // Erased: encrypted or (written before encryption) in clear, it reads as erased.
            (_, Some(None)) => *profile = erased_mark(),
            (Some(_), None) => {
                return Err(corrupt(format!(
                    "the profile of {aggregate_id} is encrypted but its data key is missing"
                )))
            }
            // In clear and never erased: as it was written.
            (None, _) => {}
        }
        Ok(())
    }

    /// What an audit export shows beside the stored bytes of one event: `{"profile": …}` (the
    /// profile in clear) while the customer's key exists, `{"erased": true}` once it was
    /// destroyed, `None` when there is nothing to add (no personal data, or a profile stored in
    /// clear and never erased, which the payload already shows). The payload is not changed:
    /// the export's records keep the sealed bytes.
    pub fn annotation(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        payload: &Value,
    ) -> Result<Option<Value>, StoreError> {
        if !carries_personal_data(aggregate_type, event_type) {
            return Ok(None);
        }
        let Some(stored) = payload.get(event_type).and_then(|p| p.get(PROFILE)) else {
            return Ok(None);
        };
        let erased = matches!(self.keys.get(aggregate_id), Some(None));
        if erased {
            return Ok(Some(erased_mark()));
        }
        if encrypted_text(stored).is_none() {
            return Ok(None);
        }
        let mut opened = serde_json::json!({ event_type: { PROFILE: stored.clone() } });
        self.open(aggregate_type, aggregate_id, event_type, &mut opened)?;
        let profile = opened[event_type][PROFILE].take();
        Ok(Some(serde_json::json!({ PROFILE: profile })))
    }

    /// [`Self::open`] on a payload kept as JSON text (the projections' reads). Events without
    /// personal data are left untouched, without parsing.
    pub fn open_text(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        payload: &mut String,
    ) -> Result<(), StoreError> {
        if !carries_personal_data(aggregate_type, event_type) {
            return Ok(());
        }
        // In clear and never erased (no key row, no ciphertext): as it was written, without
        // parsing. A ciphertext whose key row is missing still goes on, to fail loudly.
        if !self.keys.contains_key(aggregate_id) && !payload.contains("\"encrypted\"") {
            return Ok(());
        }
        let mut value: Value = serde_json::from_str(payload)
            .map_err(|e| corrupt(format!("payload of {aggregate_id}: {e}")))?;
        self.open(aggregate_type, aggregate_id, event_type, &mut value)?;
        *payload = value.to_string();
        Ok(())
    }
}

/// The keys that the events described by `(aggregate_type, aggregate_id, event_type)` need.
pub async fn keys_for<'a>(
    db: &Db,
    events: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
) -> Result<Keys, StoreError> {
    let streams = streams(events);
    if streams.is_empty() {
        return Ok(Keys::default());
    }
    let rows = match db {
        Db::Postgres(pool) => keys_pg(pool, &streams).await?,
        Db::Sqlite(pool) => {
            let mut conn = pool.acquire().await?;
            keys_sqlite(&mut conn, &streams).await?
        }
    };
    Keys::from_rows(&identity(db), rows)
}

/// [`keys_for`] inside a transaction on `db` (on SQLite it holds the write lock: read on its
/// connection).
pub async fn keys_for_in<'a>(
    db: &Db,
    tx: &mut Tx,
    events: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
) -> Result<Keys, StoreError> {
    let streams = streams(events);
    if streams.is_empty() {
        return Ok(Keys::default());
    }
    let rows = match tx {
        Tx::Postgres(t) => keys_pg(&mut **t, &streams).await?,
        Tx::Sqlite(t) => keys_sqlite(&mut *t, &streams).await?,
    };
    Keys::from_rows(&identity(db), rows)
}

/// [`keys_for`] on one PostgreSQL connection (a command's own, see `pg_events`) to the
/// database `identity` names.
pub async fn keys_for_pg_conn<'a>(
    identity: &str,
    conn: &mut sqlx::PgConnection,
    events: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
) -> Result<Keys, StoreError> {
    let streams = streams(events);
    if streams.is_empty() {
        return Ok(Keys::default());
    }
    Keys::from_rows(identity, keys_pg(conn, &streams).await?)
}

async fn keys_pg<'e>(
    on: impl sqlx::PgExecutor<'e>,
    streams: &[String],
) -> Result<Vec<KeyRow>, StoreError> {
    Ok(
        sqlx::query_as(
            "SELECT stream_id, wrapped_key FROM customer_keys WHERE stream_id = ANY($1)",
        )
        .bind(streams)
        .fetch_all(on)
        .await?,
    )
}

async fn keys_sqlite(
    conn: &mut sqlx::SqliteConnection,
    streams: &[String],
) -> Result<Vec<KeyRow>, StoreError> {
    let mut rows = Vec::with_capacity(streams.len());
    for chunk in streams.chunks(500) {
        let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT stream_id, wrapped_key FROM customer_keys WHERE stream_id IN ({})",
            params.join(", ")
        );
        let mut query = sqlx::query_as::<_, KeyRow>(&sql);
        for stream in chunk {
            query = query.bind(stream);
        }
        rows.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// Appending

/// Why an append of personal data was refused.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("customer {0} was erased (LGPD): no personal data can be stored for it again")]
    Erased(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The data key to encrypt `stream`'s new profile with: its existing one, or a new one.
enum KeyForAppend {
    Key(Box<DataKey>),
    Erased,
}

fn key_from_row(
    master: &KeyRing,
    stream: &str,
    row: Option<Option<String>>,
) -> Result<Option<KeyForAppend>, StoreError> {
    Ok(match row {
        None => None,
        Some(None) => Some(KeyForAppend::Erased),
        Some(Some(wrapped)) => Some(KeyForAppend::Key(Box::new(
            DataKey::unwrap_with(master, stream, &wrapped)
                .map_err(|e| corrupt(format!("data key of {stream}: {e}")))?,
        ))),
    })
}

/// Encrypts the personal part of each event in `events` (those with one), in place.
fn encrypt_events(
    events: &mut [(String, String, Value)],
    keys: &HashMap<String, DataKey>,
) -> Result<(), SealError> {
    for (stream, event_type, payload) in events.iter_mut() {
        let Some(profile) = profile_slot("Customer", event_type, payload) else {
            continue;
        };
        if encrypted_text(profile).is_some() {
            continue;
        }
        let key = keys
            .get(stream.as_str())
            .ok_or_else(|| corrupt(format!("no data key made for {stream}")))?;
        let text = key
            .encrypt(stream, PROFILE, &profile.to_string())
            .map_err(|e| corrupt(format!("encrypting the profile of {stream}: {e}")))?;
        *profile = serde_json::json!({ "encrypted": text });
    }
    Ok(())
}

/// The events of an append that carry personal data, as `(stream, event type, payload)`.
pub type PersonalEvents = Vec<(String, String, Value)>;

/// A data key made for a new customer, to be stored by the statement that appends its first
/// event: `(stream, tenant, wrapped key)`.
pub type NewKey = (String, String, String);

/// Encrypts the profiles among `events` on PostgreSQL (the database `identity` names), on the
/// command's connection, and returns the keys made for the `new_streams` (whose first event
/// this append holds). Those are stored by the append's own statement
/// (`pg_events`), so a registration costs no round trip more; an update reads its customer's
/// key first. Without a master key installed for that database, leaves them in clear.
pub async fn seal_for_append_pg(
    identity: &str,
    conn: &mut sqlx::PgConnection,
    events: &mut PersonalEvents,
    new_streams: &[&str],
) -> Result<Vec<NewKey>, SealError> {
    let Some(master) = master_keys(identity) else {
        return Ok(Vec::new());
    };
    let mut keys = HashMap::new();
    let mut made_here = Vec::new();
    for (stream, _, _) in events.iter() {
        if keys.contains_key(stream) {
            continue;
        }
        if new_streams.contains(&stream.as_str()) {
            // A new stream has no key yet; if another command registers it concurrently, one
            // of the two statements fails on a primary key and retries as an update.
            let (key, wrapped) = DataKey::generate(&master, stream)
                .map_err(|e| corrupt(format!("making the data key of {stream}: {e}")))?;
            made_here.push((stream.clone(), tenant_of(stream).to_string(), wrapped));
            keys.insert(stream.clone(), key);
            continue;
        }
        let key = loop {
            let row: Option<(Option<String>,)> =
                sqlx::query_as("SELECT wrapped_key FROM customer_keys WHERE stream_id = $1")
                    .bind(stream)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(StoreError::from)?;
            match key_from_row(&master, stream, row.map(|(w,)| w))? {
                Some(KeyForAppend::Key(key)) => break *key,
                Some(KeyForAppend::Erased) => return Err(SealError::Erased(stream.clone())),
                None => {
                    let (key, wrapped) = DataKey::generate(&master, stream)
                        .map_err(|e| corrupt(format!("making the data key of {stream}: {e}")))?;
                    let made = sqlx::query(
                        "INSERT INTO customer_keys (stream_id, tenant, wrapped_key, created_at_ms)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (stream_id) DO NOTHING",
                    )
                    .bind(stream)
                    .bind(tenant_of(stream))
                    .bind(&wrapped)
                    .bind(now_ms())
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::from)?
                    .rows_affected();
                    // Otherwise another command made it first: read theirs.
                    if made == 1 {
                        break key;
                    }
                }
            }
        };
        keys.insert(stream.clone(), key);
    }
    encrypt_events(events, &keys)?;
    Ok(made_here)
}

/// [`seal_for_append_pg`] on SQLite, inside the appending transaction (which holds the write
/// lock, so nobody makes the key meanwhile).
pub async fn seal_for_append_sqlite(
    identity: &str,
    conn: &mut sqlx::SqliteConnection,
    events: &mut PersonalEvents,
) -> Result<(), SealError> {
    let Some(master) = master_keys(identity) else {
        return Ok(());
    };
    let mut keys = HashMap::new();
    for (stream, _, _) in events.iter() {
        if keys.contains_key(stream) {
            continue;
        }
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT wrapped_key FROM customer_keys WHERE stream_id = $1")
                .bind(stream)
                .fetch_optional(&mut *conn)
                .await
                .map_err(StoreError::from)?;
        let key = match key_from_row(&master, stream, row.map(|(w,)| w))? {
            Some(KeyForAppend::Key(key)) => *key,
            Some(KeyForAppend::Erased) => return Err(SealError::Erased(stream.clone())),
            None => {
                let (key, wrapped) = DataKey::generate(&master, stream)
                    .map_err(|e| corrupt(format!("making the data key of {stream}: {e}")))?;
                sqlx::query(
                    "INSERT INTO customer_keys (stream_id, tenant, wrapped_key, created_at_ms)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(stream)
                .bind(tenant_of(stream))
                .bind(&wrapped)
                .bind(now_ms())
                .execute(&mut *conn)
                .await
                .map_err(StoreError::from)?;
                key
            }
        };
        keys.insert(stream.clone(), key);
    }
    encrypt_events(events, &keys)
}

// ---------------------------------------------------------------------------------------------
// Erasing

/// What destroying a customer's key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyDestroyed {
    /// The key existed and is gone now.
    Destroyed,
    /// It was destroyed by an earlier erasure.
    AlreadyErased,
    /// The customer never had a key (its profiles were stored in clear): a tombstone now
    /// makes every reader see them as erased.
    NoKey,
}

/// Destroys `stream`'s data key (keeping the tombstone row). Idempotent.
pub async fn erase(db: &Db, stream: &str) -> Result<KeyDestroyed, StoreError> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    let row: Option<(Option<String>,)> = sql!(
        &mut tx,
        as (Option<String>,),
        "SELECT wrapped_key FROM customer_keys WHERE stream_id = $1",
        [stream],
        fetch_optional
    )?;
    let outcome = match row {
        Some((Some(_),)) => {
            sql!(
                &mut tx,
                "UPDATE customer_keys SET wrapped_key = NULL, erased_at_ms = $2 WHERE stream_id = $1",
                [stream, now]
            )?;
            KeyDestroyed::Destroyed
        }
        Some((None,)) => KeyDestroyed::AlreadyErased,
        None => {
            sql!(
                &mut tx,
                "INSERT INTO customer_keys (stream_id, tenant, wrapped_key, created_at_ms, erased_at_ms)
                 VALUES ($1, $2, NULL, $3, $3)",
                [stream, tenant_of(stream), now]
            )?;
            KeyDestroyed::NoKey
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// A customer's profiles, oldest first, as readers see them (in clear, or erased), and how
/// many of them the log stores in clear (written before encryption, or without a key).
pub async fn stream_profiles(db: &Db, stream: &str) -> Result<(Vec<Value>, usize), StoreError> {
    let rows: Vec<(String, String)> = sql!(
        db,
        as (String, String),
        "SELECT event_type, CAST(payload AS TEXT) FROM events
         WHERE aggregate_type = 'Customer' AND aggregate_id = $1
           AND event_type IN ('CustomerRegistered', 'CustomerUpdated')
         ORDER BY sequence",
        [stream],
        fetch_all
    )?;
    let keys = keys_for(
        db,
        rows.iter()
            .map(|(event_type, _)| ("Customer", stream, event_type.as_str())),
    )
    .await?;
    let mut in_clear = 0;
    let mut profiles = Vec::with_capacity(rows.len());
    for (event_type, text) in rows {
        let mut payload: Value = serde_json::from_str(&text)
            .map_err(|e| corrupt(format!("payload of {stream}: {e}")))?;
        if profile_slot("Customer", &event_type, &mut payload)
            .is_some_and(|p| p.is_object() && encrypted_text(p).is_none())
        {
            in_clear += 1;
        }
        keys.open("Customer", stream, &event_type, &mut payload)?;
        if let Some(profile) = profile_slot("Customer", &event_type, &mut payload) {
            profiles.push(std::mem::take(profile));
        }
    }
    Ok((profiles, in_clear))
}

/// Rows changed in one column by [`scrub_tables`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Scrubbed {
    pub table: String,
    pub column: String,
    pub rows: u64,
}

/// Tables never rewritten: the sealed log (its personal data is encrypted), the keys, the
/// seals and checkpoints (hashes and signatures), the migrations' bookkeeping.
fn untouchable(table: &str) -> bool {
    matches!(table, "events" | "customer_keys" | "_sqlx_migrations") || table.starts_with("seal_")
}

fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The text and JSON columns (not part of a primary key) of every user table, with how to
/// read each as text on PostgreSQL (`jsonb`/`json` need a cast).
async fn text_columns(db: &Db) -> Result<Vec<(String, String, String)>, StoreError> {
    let rows: Vec<(String, String, String)> = match db {
        Db::Postgres(_) => sql!(
            db,
            as (String, String, String),
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text
             FROM information_schema.columns c
             JOIN information_schema.tables t
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name
              AND t.table_type = 'BASE TABLE'
             WHERE c.table_schema = current_schema()
               AND c.data_type IN ('text', 'character varying', 'json', 'jsonb')
               AND c.is_generated = 'NEVER'
               AND NOT EXISTS (
                   SELECT 1 FROM information_schema.table_constraints tc
                   JOIN information_schema.key_column_usage k
                     ON k.constraint_name = tc.constraint_name
                    AND k.table_schema = tc.table_schema AND k.table_name = tc.table_name
                   WHERE tc.constraint_type = 'PRIMARY KEY'
                     AND tc.table_schema = c.table_schema AND tc.table_name = c.table_name
                     AND k.column_name = c.column_name)
             ORDER BY 1, 2",
            [],
            fetch_all
        )?,
        Db::Sqlite(_) => sql!(
            db,
            as (String, String, String),
            "SELECT m.name, p.name, upper(p.type)
             FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND p.pk = 0
               AND (upper(p.type) LIKE '%TEXT%' OR upper(p.type) LIKE '%CHAR%'
                    OR upper(p.type) LIKE '%JSON%' OR p.type = '')
             ORDER BY 1, 2",
            [],
            fetch_all
        )?,
    };
    Ok(rows
        .into_iter()
        .filter(|(table, _, _)| !untouchable(table))
        .collect())
}

/// Replaces every one of `values` by [`ERASED`] in every text and JSON column of every table
/// but the untouchable ones (see the module documentation). Returns the columns changed.
pub async fn scrub_tables(db: &Db, values: &PersonalValues) -> Result<Vec<Scrubbed>, StoreError> {
    let values = values.as_slice();
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let mark_param = values.len() + 1;
    let mut changed = Vec::new();
    for (table, column, data_type) in text_columns(db).await? {
        let (text, back) = match (db, data_type.as_str()) {
            (Db::Postgres(_), "jsonb") => (format!("{}::text", quoted(&column)), "::jsonb"),
            (Db::Postgres(_), "json") => (format!("{}::text", quoted(&column)), "::json"),
            _ => (quoted(&column), ""),
        };
        let mut replaced = text.clone();
        let mut found = Vec::with_capacity(values.len());
        for i in 1..=values.len() {
            replaced = format!("replace({replaced}, ${i}, ${mark_param})");
            found.push(match db {
                Db::Postgres(_) => format!("strpos({text}, ${i}) > 0"),
                Db::Sqlite(_) => format!("instr({text}, ${i}) > 0"),
            });
        }
        let sql = format!(
            "UPDATE {} SET {} = ({replaced}){back} WHERE {}",
            quoted(&table),
            quoted(&column),
            found.join(" OR ")
        );
        let rows = match db {
            Db::Postgres(pool) => {
                let mut query = sqlx::query(&sql);
                for v in values {
                    query = query.bind(v);
                }
                query.bind(ERASED).execute(pool).await?.rows_affected()
            }
            Db::Sqlite(pool) => {
                let mut query = sqlx::query(&sql);
                for v in values {
                    query = query.bind(v);
                }
                query.bind(ERASED).execute(pool).await?.rows_affected()
            }
        };
        if rows > 0 {
            changed.push(Scrubbed {
                table,
                column,
                rows,
            });
        }
    }
    Ok(changed)
}

/// Every text value of every text/JSON/blob column of every table (the log included), as
/// `(table, column, text)`: what the erasure tests scan for personal values.
#[cfg(feature = "dev-tools")]
pub async fn dump_all_text(db: &Db) -> Result<Vec<(String, String, String)>, StoreError> {
    let columns: Vec<(String, String, String)> = match db {
        Db::Postgres(_) => sql!(
            db,
            as (String, String, String),
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text
             FROM information_schema.columns c
             JOIN information_schema.tables t
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name
              AND t.table_type = 'BASE TABLE'
             WHERE c.table_schema = current_schema()
               AND c.data_type IN ('text', 'character varying', 'json', 'jsonb', 'bytea')
             ORDER BY 1, 2",
            [],
            fetch_all
        )?,
        Db::Sqlite(_) => sql!(
            db,
            as (String, String, String),
            "SELECT m.name, p.name, upper(p.type)
             FROM sqlite_master m, pragma_table_xinfo(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
               AND upper(p.type) NOT IN ('INTEGER', 'INT', 'BIGINT', 'REAL')
             ORDER BY 1, 2",
            [],
            fetch_all
        )?,
    };
    let mut out = Vec::new();
    for (table, column, data_type) in columns {
        let sql = match db {
            // Bytes as escaped text: printable ASCII stays readable, so a value would show.
            Db::Postgres(_) if data_type == "bytea" => format!(
                "SELECT encode({}, 'escape') FROM {} WHERE {} IS NOT NULL",
                quoted(&column),
                quoted(&table),
                quoted(&column)
            ),
            Db::Postgres(_) => format!(
                "SELECT {}::text FROM {} WHERE {} IS NOT NULL",
                quoted(&column),
                quoted(&table),
                quoted(&column)
            ),
            // Any SQLite value, blobs included, read as bytes.
            Db::Sqlite(_) => format!(
                "SELECT CAST({} AS BLOB) FROM {} WHERE {} IS NOT NULL",
                quoted(&column),
                quoted(&table),
                quoted(&column)
            ),
        };
        let texts: Vec<(String,)> = match db {
            Db::Postgres(pool) => sqlx::query_as(&sql).fetch_all(pool).await?,
            Db::Sqlite(pool) => sqlx::query_as::<_, (Vec<u8>,)>(&sql)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(|(bytes,)| (String::from_utf8_lossy(&bytes).into_owned(),))
                .collect(),
        };
        out.extend(
            texts
                .into_iter()
                .map(|(text,)| (table.clone(), column.clone(), text)),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_customer_profiles_are_personal_slots() {
        let mut registered = json!({"CustomerRegistered": {"profile": {"name": "x"}}});
        assert!(profile_slot("Customer", "CustomerRegistered", &mut registered).is_some());
        let mut linked = json!({"ContactLinked": {"bling_contact_id": 1}});
        assert!(profile_slot("Customer", "ContactLinked", &mut linked).is_none());
        let mut billed = json!({"InvoiceBilled": {"profile": {"name": "x"}}});
        assert!(profile_slot("Invoice", "InvoiceBilled", &mut billed).is_none());
    }

    #[test]
    fn an_erased_customer_reads_as_erased_whether_stored_encrypted_or_in_clear() {
        let keys = Keys {
            keys: HashMap::from([("shop/c1".to_string(), None)]),
        };
        for profile in [
            json!({"encrypted": "pii1.AAAA.BBBB"}),
            json!({"name": "Maria"}),
        ] {
            let mut payload =
                json!({"CustomerUpdated": {"changed_fields": [], "profile": profile}});
            keys.open("Customer", "shop/c1", "CustomerUpdated", &mut payload)
                .unwrap();
            assert_eq!(payload["CustomerUpdated"]["profile"], erased_mark());
        }
        // Never erased and in clear: untouched. Encrypted with no key row: refused.
        let mut clear = json!({"CustomerRegistered": {"profile": {"name": "Maria"}}});
        keys.open("Customer", "shop/c2", "CustomerRegistered", &mut clear)
            .unwrap();
        assert_eq!(clear["CustomerRegistered"]["profile"]["name"], "Maria");
        let mut orphan = json!({"CustomerRegistered": {"profile": {"encrypted": "pii1.A.B"}}});
        assert!(keys
            .open("Customer", "shop/c2", "CustomerRegistered", &mut orphan)
            .is_err());
    }
}
