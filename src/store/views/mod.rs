//! The projection tables (`proj_*`): the views' rows as SQL, column lists, loading by key and
//! batched writes on both backends, the rebuild's `COPY` and index handling, and what support
//! reads from them ([`reads`]). What the rows mean, and the exactly-once contract between the
//! rows and their checkpoints, is the runner's (`crate::projections`) and [`super::checkpoints`]'.
//!
//! PostgreSQL writes a batch with one statement per table (`INSERT … SELECT FROM UNNEST(arrays)
//! ON CONFLICT … DO UPDATE`); SQLite runs one prepared statement per row inside the batch's
//! transaction (it is in-process, so that is already fast).

use projections::connections::ConnectionStatus;
use projections::customers::CustomerSync;
use projections::failures::{Failure, InvoiceRef};
use projections::invoices::{InvoiceSync, Outcome, SyncState};
use projections::timeline::{Entry, TenantConnection};
use std::borrow::Cow;

use sqlx::Row;

use crate::store::{StoreError, Tx};

pub mod reads;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Text,
    Int,
}

/// One value of a column; text borrows from the row when it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V<'a> {
    T(Option<Cow<'a, str>>),
    I(Option<i64>),
}

/// A view table: its columns (the key columns first, all text) and how it is written.
pub struct Table {
    pub name: &'static str,
    pub cols: &'static [(&'static str, Ty)],
    /// How many leading columns form the primary key.
    pub key: usize,
    /// Rows are replaced (upsert) rather than only inserted.
    pub upsert: bool,
}

impl Table {
    pub fn select_list(&self) -> String {
        self.cols
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A row type stored in a [`Table`].
pub trait Stored: Sized {
    const TABLE: Table;
    fn key(&self) -> Vec<String>;
    fn to_vals(&self) -> Vec<V<'_>>;
    fn from_vals(v: &mut Vals) -> Result<Self, StoreError>;
}

/// Reads a row's values in column order.
pub struct Vals(std::vec::IntoIter<V<'static>>);

impl Vals {
    fn next(&mut self) -> Result<V<'static>, StoreError> {
        self.0
            .next()
            .ok_or_else(|| StoreError::Corrupt("view row is short of columns".into()))
    }
    pub fn ot(&mut self) -> Result<Option<String>, StoreError> {
        match self.next()? {
            V::T(t) => Ok(t.map(Cow::into_owned)),
            V::I(_) => Err(StoreError::Corrupt("expected a text column".into())),
        }
    }
    pub fn t(&mut self) -> Result<String, StoreError> {
        self.ot()?
            .ok_or_else(|| StoreError::Corrupt("unexpected NULL text".into()))
    }
    pub fn oi(&mut self) -> Result<Option<i64>, StoreError> {
        match self.next()? {
            V::I(i) => Ok(i),
            V::T(_) => Err(StoreError::Corrupt("expected an integer column".into())),
        }
    }
    pub fn i(&mut self) -> Result<i64, StoreError> {
        self.oi()?
            .ok_or_else(|| StoreError::Corrupt("unexpected NULL integer".into()))
    }
}

fn t(s: &str) -> V<'_> {
    V::T(Some(Cow::Borrowed(s)))
}
fn ot(s: &Option<String>) -> V<'_> {
    V::T(s.as_deref().map(Cow::Borrowed))
}
fn i(n: i64) -> V<'static> {
    V::I(Some(n))
}
fn oi(n: Option<i64>) -> V<'static> {
    V::I(n)
}

/// Decodes the columns of `table` from a PostgreSQL row.
pub fn pg_vals(row: &sqlx::postgres::PgRow, cols: &[(&str, Ty)]) -> Result<Vals, StoreError> {
    let mut out = Vec::with_capacity(cols.len());
    for (idx, (_, ty)) in cols.iter().enumerate() {
        out.push(match ty {
            Ty::Text => V::T(row.try_get::<Option<String>, _>(idx)?.map(Cow::Owned)),
            Ty::Int => V::I(row.try_get(idx)?),
        });
    }
    Ok(Vals(out.into_iter()))
}

pub fn sqlite_vals(row: &sqlx::sqlite::SqliteRow, cols: &[(&str, Ty)]) -> Result<Vals, StoreError> {
    let mut out = Vec::with_capacity(cols.len());
    for (idx, (_, ty)) in cols.iter().enumerate() {
        out.push(match ty {
            Ty::Text => V::T(row.try_get::<Option<String>, _>(idx)?.map(Cow::Owned)),
            Ty::Int => V::I(row.try_get(idx)?),
        });
    }
    Ok(Vals(out.into_iter()))
}

/// Loads the rows of `R` with these keys (missing keys are simply absent).
pub async fn load<R: Stored>(tx: &mut Tx, keys: &[Vec<String>]) -> Result<Vec<R>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let table = &R::TABLE;
    let key_cols: Vec<&str> = table.cols[..table.key].iter().map(|(c, _)| *c).collect();
    let mut out = Vec::with_capacity(keys.len());
    match tx {
        Tx::Postgres(t) => {
            let arrays: Vec<String> = (1..=table.key).map(|n| format!("${n}::text[]")).collect();
            let sql = format!(
                "SELECT {} FROM {} WHERE ({}) IN (SELECT * FROM UNNEST({}))",
                table.select_list(),
                table.name,
                key_cols.join(", "),
                arrays.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for k in 0..table.key {
                let column: Vec<String> = keys.iter().map(|key| key[k].clone()).collect();
                query = query.bind(column);
            }
            for row in query.fetch_all(&mut **t).await? {
                out.push(R::from_vals(&mut pg_vals(&row, table.cols)?)?);
            }
        }
        Tx::Sqlite(t) => {
            let cond: Vec<String> = key_cols
                .iter()
                .enumerate()
                .map(|(n, c)| format!("{c} = ${}", n + 1))
                .collect();
            let sql = format!(
                "SELECT {} FROM {} WHERE {}",
                table.select_list(),
                table.name,
                cond.join(" AND ")
            );
            for key in keys {
                let mut query = sqlx::query(&sql);
                for part in key {
                    query = query.bind(part);
                }
                if let Some(row) = query.fetch_optional(&mut **t).await? {
                    out.push(R::from_vals(&mut sqlite_vals(&row, table.cols)?)?);
                }
            }
        }
    }
    Ok(out)
}

fn conflict_clause(table: &Table) -> String {
    if !table.upsert {
        return String::new();
    }
    let keys: Vec<&str> = table.cols[..table.key].iter().map(|(c, _)| *c).collect();
    let sets: Vec<String> = table.cols[table.key..]
        .iter()
        .map(|(c, _)| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        " ON CONFLICT ({}) DO UPDATE SET {}",
        keys.join(", "),
        sets.join(", ")
    )
}

/// Writes `rows` (each key at most once per call).
pub async fn write<R: Stored>(tx: &mut Tx, rows: &[&R]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let table = &R::TABLE;
    let conflict = conflict_clause(table);
    match tx {
        Tx::Postgres(t) => {
            let arrays: Vec<String> = table
                .cols
                .iter()
                .enumerate()
                .map(|(n, (_, ty))| match ty {
                    Ty::Text => format!("${}::text[]", n + 1),
                    Ty::Int => format!("${}::bigint[]", n + 1),
                })
                .collect();
            let sql = format!(
                "INSERT INTO {} ({}) SELECT * FROM UNNEST({}){conflict}",
                table.name,
                table.select_list(),
                arrays.join(", ")
            );
            let mut texts: Vec<Vec<Option<String>>> = Vec::new();
            let mut ints: Vec<Vec<Option<i64>>> = Vec::new();
            let slots: Vec<(Ty, usize)> = table
                .cols
                .iter()
                .map(|(_, ty)| match ty {
                    Ty::Text => {
                        texts.push(Vec::with_capacity(rows.len()));
                        (Ty::Text, texts.len() - 1)
                    }
                    Ty::Int => {
                        ints.push(Vec::with_capacity(rows.len()));
                        (Ty::Int, ints.len() - 1)
                    }
                })
                .collect();
            for row in rows {
                for (v, (_, slot)) in row.to_vals().into_iter().zip(&slots) {
                    match v {
                        V::T(x) => texts[*slot].push(x.map(Cow::into_owned)),
                        V::I(x) => ints[*slot].push(x),
                    }
                }
            }
            let mut texts = texts.into_iter();
            let mut ints = ints.into_iter();
            let mut query = sqlx::query(&sql);
            for (ty, _) in &slots {
                query = match ty {
                    Ty::Text => query.bind(texts.next().unwrap_or_default()),
                    Ty::Int => query.bind(ints.next().unwrap_or_default()),
                };
            }
            query.execute(&mut **t).await?;
        }
        Tx::Sqlite(t) => {
            let params: Vec<String> = (1..=table.cols.len()).map(|n| format!("${n}")).collect();
            let sql = format!(
                "INSERT INTO {} ({}) VALUES ({}){conflict}",
                table.name,
                table.select_list(),
                params.join(", ")
            );
            for row in rows {
                let mut query = sqlx::query(&sql);
                for v in row.to_vals() {
                    query = match v {
                        V::T(x) => query.bind(x.map(Cow::into_owned)),
                        V::I(x) => query.bind(x),
                    };
                }
                query.execute(&mut **t).await?;
            }
        }
    }
    Ok(())
}

/// Inserts `rows` into a table the caller has just emptied: `COPY … FROM STDIN` on PostgreSQL
/// (several times faster than `INSERT … UNNEST` for a rebuild's millions of rows), the
/// prepared per-row insert on SQLite.
pub async fn write_bulk<R: Stored>(tx: &mut Tx, rows: &[&R]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    if let Tx::Sqlite(_) = tx {
        return write(tx, rows).await;
    }
    let mut copy = CopyWriter::open::<R>(tx).await?;
    copy.write(rows.iter().copied()).await?;
    copy.finish().await?;
    Ok(())
}

/// A `COPY … FROM STDIN` kept open across many batches of rows, so the server ingests one
/// batch while the caller prepares the next. It uses `COPY`'s binary format: the server
/// copies each value as it comes instead of scanning text for delimiters and escapes and
/// parsing numbers (the timeline alone is a row per event of the log).
pub struct CopyWriter<'c> {
    copy: sqlx::postgres::PgCopyIn<&'c mut sqlx::PgConnection>,
    buffer: Vec<u8>,
    sent: usize,
}

/// The binary format's header: signature, flags, header-extension length.
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

impl<'c> CopyWriter<'c> {
    /// Opens the `COPY` of `R`'s table in `tx` (PostgreSQL only: SQLite has no `COPY`).
    pub async fn open<R: Stored>(tx: &'c mut Tx) -> Result<Self, StoreError> {
        let Tx::Postgres(conn) = tx else {
            return Err(StoreError::Corrupt(
                "COPY needs a PostgreSQL transaction".into(),
            ));
        };
        let conn: &'c mut sqlx::PgConnection = conn;
        let table = &R::TABLE;
        let copy = conn
            .copy_in_raw(&format!(
                "COPY {} ({}) FROM STDIN (FORMAT binary)",
                table.name,
                table.select_list()
            ))
            .await?;
        let mut buffer = Vec::with_capacity(COPY_CHUNK + 4096);
        buffer.extend_from_slice(BINARY_HEADER);
        Ok(Self {
            copy,
            buffer,
            sent: 0,
        })
    }

    pub async fn write<'r, R: Stored + 'r>(
        &mut self,
        rows: impl IntoIterator<Item = &'r R>,
    ) -> Result<(), StoreError> {
        for row in rows {
            binary_row(&mut self.buffer, &row.to_vals());
            if self.buffer.len() >= COPY_CHUNK {
                self.copy.send(self.buffer.as_slice()).await?;
                self.sent += self.buffer.len();
                self.buffer.clear();
            }
        }
        Ok(())
    }

    pub async fn finish(mut self) -> Result<u64, StoreError> {
        // The trailer: a field count of -1.
        self.buffer.extend_from_slice(&(-1i16).to_be_bytes());
        tracing::debug!(bytes = self.sent + self.buffer.len(), "COPY finishing");
        self.copy.send(self.buffer.as_slice()).await?;
        Ok(self.copy.finish().await?)
    }
}

/// Bytes sent to the server per `CopyData` message.
const COPY_CHUNK: usize = 1 << 20;

/// One row in `COPY`'s binary format: the field count, then each field's length (-1 for NULL)
/// and bytes. Text goes as its UTF-8 bytes, integers as 8 big-endian bytes (every integer
/// column of the views is a `bigint`).
fn binary_row(out: &mut Vec<u8>, values: &[V]) {
    out.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for value in values {
        match value {
            V::T(None) | V::I(None) => out.extend_from_slice(&(-1i32).to_be_bytes()),
            V::T(Some(text)) => {
                out.extend_from_slice(&(text.len() as i32).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            V::I(Some(number)) => {
                out.extend_from_slice(&8i32.to_be_bytes());
                out.extend_from_slice(&number.to_be_bytes());
            }
        }
    }
}

/// One row in `COPY`'s text format: tab-separated, `\N` for NULL, backslash escapes (the
/// benchmark's seeder writes events this way).
pub fn copy_line(out: &mut String, values: &[V]) {
    use std::fmt::Write;
    for (n, value) in values.iter().enumerate() {
        if n > 0 {
            out.push('\t');
        }
        match value {
            V::T(None) | V::I(None) => out.push_str("\\N"),
            V::I(Some(number)) => {
                let _ = write!(out, "{number}");
            }
            V::T(Some(text))
                if !text
                    .bytes()
                    .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r')) =>
            {
                out.push_str(text)
            }
            V::T(Some(text)) => {
                for c in text.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '\t' => out.push_str("\\t"),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
            }
        }
    }
    out.push('\n');
}

use Ty::{Int as I, Text as T};

/// A value of a view column: its SQL type, and how it is written and read back. The types a
/// view row's fields have; a row's encoder and decoder are these, field by field.
pub trait Column: Sized {
    const TY: Ty;
    fn encode(&self) -> V<'_>;
    fn decode(v: &mut Vals) -> Result<Self, StoreError>;
}

impl Column for String {
    const TY: Ty = T;
    fn encode(&self) -> V<'_> {
        t(self)
    }
    fn decode(v: &mut Vals) -> Result<Self, StoreError> {
        v.t()
    }
}

impl Column for Option<String> {
    const TY: Ty = T;
    fn encode(&self) -> V<'_> {
        ot(self)
    }
    fn decode(v: &mut Vals) -> Result<Self, StoreError> {
        v.ot()
    }
}

impl Column for i64 {
    const TY: Ty = I;
    fn encode(&self) -> V<'_> {
        i(*self)
    }
    fn decode(v: &mut Vals) -> Result<Self, StoreError> {
        v.i()
    }
}

impl Column for Option<i64> {
    const TY: Ty = I;
    fn encode(&self) -> V<'_> {
        oi(*self)
    }
    fn decode(v: &mut Vals) -> Result<Self, StoreError> {
        v.oi()
    }
}

/// Booleans are integer columns, 0 or 1.
impl Column for bool {
    const TY: Ty = I;
    fn encode(&self) -> V<'_> {
        i(i64::from(*self))
    }
    fn decode(v: &mut Vals) -> Result<Self, StoreError> {
        Ok(v.i()? != 0)
    }
}

impl Column for Outcome {
    const TY: Ty = T;
    fn encode(&self) -> V<'_> {
        t(self.as_str())
    }
    fn decode(v: &mut Vals) -> Result<Self, StoreError> {
        Ok(Outcome::parse(&v.t()?))
    }
}

impl Column for SyncState {
    const TY: Ty = T;
    fn encode(&self) -> V<'_> {
        t(self.as_str())
    }
    fn decode(v: &mut Vals) -> Result<Self, StoreError> {
        let raw = v.t()?;
        SyncState::parse(&raw).ok_or_else(|| StoreError::Corrupt(format!("invoice state {raw:?}")))
    }
}

/// One declaration per view row: its table, its key (the leading columns), whether rows are
/// replaced or only inserted, and its columns in order, each a field of the row with its type.
/// The column list, the encoder and the decoder all follow from it, so they cannot disagree.
macro_rules! view_row {
    ($row:ident in $table:literal, key($($k:ident),+), upsert: $upsert:literal, {
        $($f:ident: $ty:ty),+ $(,)?
    }) => {
        impl Stored for $row {
            const TABLE: Table = Table {
                name: $table,
                cols: &[$((stringify!($f), <$ty as Column>::TY)),+],
                key: [$(stringify!($k)),+].len(),
                upsert: $upsert,
            };
            fn key(&self) -> Vec<String> {
                vec![$(self.$k.clone()),+]
            }
            fn to_vals(&self) -> Vec<V<'_>> {
                vec![$(Column::encode(&self.$f)),+]
            }
            fn from_vals(v: &mut Vals) -> Result<Self, StoreError> {
                Ok($row {
                    $($f: <$ty as Column>::decode(v)?),+
                })
            }
        }
    };
}

view_row! {
    InvoiceSync in "proj_invoices", key(tenant, invoice_id), upsert: true, {
        tenant: String,
        invoice_id: String,
        customer_id: String,
        number: String,
        total_centavos: i64,
        issue_date: String,
        billed_at_ms: i64,
        billed_position: i64,
        content_version: i64,
        synced_version: Option<i64>,
        bling_order_id: Option<i64>,
        bling_number: Option<i64>,
        situacao_id: Option<i64>,
        situacao_name: Option<String>,
        situacao_position: Option<i64>,
        nfe_id: Option<i64>,
        cancelled: bool,
        cancelled_position: Option<i64>,
        cancel_reason: Option<String>,
        last_outcome: Outcome,
        state: SyncState,
        last_cause_kind: Option<String>,
        last_cause_message: Option<String>,
        last_failure_at_ms: Option<i64>,
        retry_at_ms: Option<i64>,
        attempts: i64,
        failures_total: i64,
        updated_at_ms: i64,
        last_position: i64,
        nfe_status: Option<String>,
        nfe_numero: Option<String>,
        nfe_serie: Option<i64>,
        nfe_chave: Option<String>,
        nfe_link_danfe: Option<String>,
        nfe_link_pdf: Option<String>,
        nfe_reason: Option<String>,
        divergence: Option<String>,
    }
}

view_row! {
    Entry in "proj_timeline", key(tenant, subject, subject_id), upsert: false, {
        tenant: String,
        subject: String,
        subject_id: String,
        position: i64,
        recorded_at_ms: i64,
        event_type: String,
        actor: Option<String>,
        correlation_id: Option<String>,
        summary: String,
        calls: String,
        connection_state: String,
        cause_kind: Option<String>,
        cause_message: Option<String>,
        detail: String,
    }
}

view_row! {
    TenantConnection in "proj_timeline_tenants", key(tenant), upsert: true, {
        tenant: String,
        state: String,
    }
}

view_row! {
    Failure in "proj_failures", key(tenant), upsert: false, {
        tenant: String,
        position: i64,
        subject: String,
        invoice_id: Option<String>,
        invoice_number: Option<String>,
        customer_id: Option<String>,
        recorded_at_ms: i64,
        outcome: String,
        cause_kind: String,
        message: String,
        evidence: String,
        attempt: Option<i64>,
        retry_at_ms: Option<i64>,
    }
}

view_row! {
    InvoiceRef in "proj_failure_invoices", key(tenant, invoice_id), upsert: true, {
        tenant: String,
        invoice_id: String,
        customer_id: String,
        number: String,
    }
}

view_row! {
    ConnectionStatus in "proj_connections", key(tenant), upsert: true, {
        tenant: String,
        state: String,
        scopes: Option<String>,
        connected_at_ms: Option<i64>,
        access_expires_at_ms: Option<i64>,
        token_fingerprint: Option<String>,
        last_refresh_at_ms: Option<i64>,
        last_error: Option<String>,
        last_error_at_ms: Option<i64>,
        revoked_since_ms: Option<i64>,
        revoked_evidence: Option<String>,
        disconnected_at_ms: Option<i64>,
        disconnected_by: Option<String>,
        updated_at_ms: i64,
        last_position: i64,
    }
}

view_row! {
    CustomerSync in "proj_customers", key(tenant, customer_id), upsert: true, {
        tenant: String,
        customer_id: String,
        name: String,
        tax_id: String,
        person_type: String,
        profile_version: i64,
        synced_version: Option<i64>,
        bling_contact_id: Option<i64>,
        state: String,
        failed_version: Option<i64>,
        last_cause_kind: Option<String>,
        last_cause_message: Option<String>,
        last_failure_at_ms: Option<i64>,
        registered_at_ms: i64,
        updated_at_ms: i64,
        last_position: i64,
    }
}

/// Every table of each projection, for a rebuild.
pub fn tables_of(name: &str) -> &'static [&'static str] {
    match name {
        projections::invoices::NAME => &["proj_invoices"],
        projections::timeline::NAME => &["proj_timeline", "proj_timeline_tenants"],
        projections::failures::NAME => &["proj_failures", "proj_failure_invoices"],
        projections::connections::NAME => &["proj_connections"],
        projections::customers::NAME => &["proj_customers"],
        _ => &[],
    }
}

/// Empties the tables of the projections `names` (their checkpoints are the caller's, who holds
/// their locks).
pub async fn empty(tx: &mut Tx, names: &[&str]) -> Result<(), StoreError> {
    for name in names {
        for table in tables_of(name) {
            match &mut *tx {
                // TRUNCATE is transactional on PostgreSQL and frees the space at once.
                Tx::Postgres(t) => {
                    sqlx::query(&format!("TRUNCATE {table}"))
                        .execute(&mut **t)
                        .await?;
                }
                Tx::Sqlite(t) => {
                    sqlx::query(&format!("DELETE FROM {table}"))
                        .execute(&mut **t)
                        .await?;
                }
            }
        }
    }
    Ok(())
}

/// How to put back what [`set_indexes_aside`] dropped.
pub struct SetAside {
    /// `ALTER TABLE … ADD CONSTRAINT …` for primary keys, then `CREATE INDEX …`.
    statements: Vec<String>,
}

/// Drops the indexes and primary keys of the emptied tables (PostgreSQL; nothing on SQLite):
/// building an index once over the loaded rows costs a fraction of maintaining it row by row.
/// The definitions come from the catalog, so they stay whatever the migrations made them.
pub async fn set_indexes_aside(tx: &mut Tx, names: &[&str]) -> Result<SetAside, StoreError> {
    let mut statements = Vec::new();
    let Tx::Postgres(t) = tx else {
        return Ok(SetAside { statements });
    };
    for name in names {
        for table in tables_of(name) {
            let keys: Vec<(String, String)> = sqlx::query_as(
                "SELECT conname::text, pg_get_constraintdef(oid)
                 FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'",
            )
            .bind(table)
            .fetch_all(&mut **t)
            .await?;
            let indexes: Vec<(String, String)> = sqlx::query_as(
                "SELECT i.relname::text, pg_get_indexdef(i.oid)
                 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                 WHERE x.indrelid = $1::regclass AND NOT x.indisprimary",
            )
            .bind(table)
            .fetch_all(&mut **t)
            .await?;
            for (index, definition) in indexes {
                sqlx::query(&format!("DROP INDEX {index}"))
                    .execute(&mut **t)
                    .await?;
                statements.push(definition);
            }
            for (constraint, definition) in keys {
                sqlx::query(&format!("ALTER TABLE {table} DROP CONSTRAINT {constraint}"))
                    .execute(&mut **t)
                    .await?;
                // Keys first: they also check the rebuilt rows are unique.
                statements.insert(
                    0,
                    format!("ALTER TABLE {table} ADD CONSTRAINT {constraint} {definition}"),
                );
            }
        }
    }
    Ok(SetAside { statements })
}

/// Recreates what [`set_indexes_aside`] dropped (keys first).
pub async fn restore_indexes(tx: &mut Tx, aside: SetAside) -> Result<(), StoreError> {
    let Tx::Postgres(t) = tx else {
        return Ok(());
    };
    for statement in aside.statements {
        sqlx::query(&statement).execute(&mut **t).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_rows_carry_lengths_and_big_endian_integers() {
        let mut row = Vec::new();
        binary_row(&mut row, &[t("ab"), V::T(None), i(-2)]);
        let mut expected = vec![
            0, 3, 0, 0, 0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 8,
        ];
        expected.extend_from_slice(&(-2i64).to_be_bytes());
        assert_eq!(row, expected);
    }

    #[test]
    fn copy_lines_escape_what_copy_text_format_reserves() {
        let mut line = String::new();
        copy_line(
            &mut line,
            &[
                t("a\tb\nc\\d\re"),
                V::T(None),
                i(-42),
                V::I(None),
                t("João"),
            ],
        );
        assert_eq!(line, "a\\tb\\nc\\\\d\\re\t\\N\t-42\t\\N\tJoão\n");
    }
}
