//! Rebuild: replays the whole log into emptied views in one transaction.
//!
//! The live runner pays, per batch, for loading the rows its events touch and upserting them.
//! A rebuild starts from empty tables, so it needs neither: it folds every event into the
//! views in memory (the same pure reducers, hence the same rows), streams the append-only rows
//! (timeline entries, failures) out with `COPY` as it goes, and writes the keyed rows
//! (invoices, customers, connections) once at the end. On PostgreSQL a reader task fetches and
//! decodes the next chunk while this one is applied, so reading, decoding and writing overlap.
//!
//! One transaction means readers see the old views until the new ones are complete (on
//! PostgreSQL `TRUNCATE` makes them wait instead), a crash leaves the old views in place, and
//! the live runner, blocked on the checkpoint locks, resumes from the rebuilt position.
//! Memory grows with the number of invoices and customers, not with the number of events.

use tokio::sync::mpsc;

use super::{
    empty, items, lock_checkpoints, read, read_in, save_checkpoint, Connections, Customers,
    Failures, Invoices, Item, Progress, Timeline, View, Working,
};
use crate::store::views::{restore_indexes, set_indexes_aside, write_bulk, CopyWriter};
use crate::store::{log, Db, StoreError, Tx};
use projections::{connections, customers, failures, invoices, timeline};

/// The views being rebuilt, held in memory until the end.
struct Views {
    invoices: Option<Working<<Invoices as View>::Row>>,
    customers: Option<Working<<Customers as View>::Row>>,
    connections: Option<Working<<Connections as View>::Row>>,
    timeline: Option<Working<<Timeline as View>::Row>>,
    failures: Option<Working<<Failures as View>::Row>>,
    /// Failure rows found so far (few next to the timeline's), written at the end so the
    /// timeline can keep its `COPY` open meanwhile.
    found_failures: Vec<failures::Failure>,
}

impl Views {
    fn new(names: &[&str]) -> Self {
        let wanted = |name: &str| names.contains(&name);
        Self {
            invoices: wanted(invoices::NAME).then(Working::empty),
            customers: wanted(customers::NAME).then(Working::empty),
            connections: wanted(connections::NAME).then(Working::empty),
            timeline: wanted(timeline::NAME).then(Working::empty),
            failures: wanted(failures::NAME).then(Working::empty),
            found_failures: Vec::new(),
        }
    }

    /// Folds one chunk in; returns its timeline entries, for the caller to write.
    fn apply(&mut self, items: &[Item]) -> Vec<timeline::Entry> {
        let items: Vec<&Item> = items.iter().collect();
        // The keyed views append nothing: their rows are written once, in `finish`.
        if let Some(view) = &mut self.invoices {
            Invoices::fold(view, &items);
        }
        if let Some(view) = &mut self.customers {
            Customers::fold(view, &items);
        }
        if let Some(view) = &mut self.connections {
            Connections::fold(view, &items);
        }
        if let Some(view) = &mut self.failures {
            let found = Failures::fold(view, &items);
            self.found_failures.extend(found);
        }
        match &mut self.timeline {
            Some(view) => Timeline::fold(view, &items),
            None => Vec::new(),
        }
    }

    /// Writes the keyed rows.
    async fn finish(self, tx: &mut Tx) -> Result<(), StoreError> {
        if let Some(view) = &self.invoices {
            write_bulk(tx, &view.touched()).await?;
        }
        if let Some(view) = &self.customers {
            write_bulk(tx, &view.touched()).await?;
        }
        if let Some(view) = &self.connections {
            write_bulk(tx, &view.touched()).await?;
        }
        if let Some(view) = &self.timeline {
            write_bulk(tx, &view.touched()).await?;
        }
        if let Some(view) = &self.failures {
            write_bulk(tx, &view.touched()).await?;
        }
        write_bulk(tx, &self.found_failures.iter().collect::<Vec<_>>()).await?;
        Ok(())
    }
}

/// Empties `names` and replays the log up to its current head into them, in `chunk`-sized
/// reads; returns how many events were replayed.
pub(super) async fn replay(
    db: &Db,
    names: &[&str],
    chunk: i64,
    progress: &mut impl FnMut(Progress),
) -> Result<i64, StoreError> {
    let chunk = chunk.max(1);
    let head = log::head_position(db).await?;
    let mut tx = db.begin().await?;
    lock_checkpoints(&mut tx, names).await?;
    empty(&mut tx, names).await?;
    let indexes = set_indexes_aside(&mut tx, names).await?;
    let mut views = Views::new(names);
    let mut done = 0i64;
    let mut last = 0i64;
    progress(Progress { done, total: head });
    match db {
        Db::Postgres(_) => {
            // Two chunks in flight at most: enough to overlap, bounded in memory.
            let (sender, mut receiver) = mpsc::channel::<Result<Vec<Item>, StoreError>>(2);
            let reader_db = db.clone();
            let reader = tokio::spawn(async move {
                let mut after = 0;
                while after < head {
                    let events = match read(&reader_db, after, chunk).await {
                        Ok(events) => events,
                        Err(error) => {
                            let _ = sender.send(Err(error)).await;
                            return;
                        }
                    };
                    let Some(end) = events.last().map(|e| e.position) else {
                        return;
                    };
                    after = end;
                    if sender.send(Ok(items(events))).await.is_err() {
                        return;
                    }
                }
            });
            let mut timeline_copy = match views.timeline {
                Some(_) => Some(CopyWriter::open::<timeline::Entry>(&mut tx).await?),
                None => None,
            };
            let mut waited = std::time::Duration::ZERO;
            let mut applied = std::time::Duration::ZERO;
            loop {
                let t0 = std::time::Instant::now();
                let Some(chunk) = receiver.recv().await else {
                    break;
                };
                let t1 = std::time::Instant::now();
                waited += t1 - t0;
                let chunk = chunk?;
                if let Some(item) = chunk.last() {
                    last = item.log.position;
                }
                done += chunk.len() as i64;
                let entries = views.apply(&chunk);
                if let Some(copy) = &mut timeline_copy {
                    copy.write(&entries).await?;
                }
                applied += t1.elapsed();
                progress(Progress {
                    done,
                    total: head.max(done),
                });
            }
            // Which side bounds a rebuild (RUST_LOG=bling_ledger::projections=debug).
            tracing::debug!(
                waited_for_reader_ms = waited.as_millis() as u64,
                applied_ms = applied.as_millis() as u64,
                "rebuild replayed"
            );
            let draining = std::time::Instant::now();
            if let Some(copy) = timeline_copy {
                copy.finish().await?;
            }
            tracing::debug!(
                drain_ms = draining.elapsed().as_millis() as u64,
                "rebuild finished the timeline's COPY"
            );
            reader
                .await
                .map_err(|e| StoreError::Corrupt(format!("rebuild reader stopped: {e}")))?;
        }
        Db::Sqlite(_) => {
            while last < head {
                let events = read_in(db, &mut tx, last, chunk).await?;
                let Some(end) = events.last().map(|e| e.position) else {
                    break;
                };
                last = end;
                done += events.len() as i64;
                let entries = views.apply(&items(events));
                write_bulk(&mut tx, &entries.iter().collect::<Vec<_>>()).await?;
                progress(Progress {
                    done,
                    total: head.max(done),
                });
            }
        }
    }
    let finishing = std::time::Instant::now();
    views.finish(&mut tx).await?;
    tracing::debug!(
        finish_ms = finishing.elapsed().as_millis() as u64,
        "rebuild wrote keyed rows"
    );
    let indexing = std::time::Instant::now();
    restore_indexes(&mut tx, indexes).await?;
    tracing::debug!(
        index_ms = indexing.elapsed().as_millis() as u64,
        "rebuild recreated indexes"
    );
    for name in names {
        save_checkpoint(&mut tx, name, last).await?;
    }
    tx.commit().await?;
    Ok(done)
}
