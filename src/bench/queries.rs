//! Support query latency on a large ledger: the history of random invoices through the same
//! code the HTTP endpoint runs ([`crate::projections::queries::history`]), p50/p99; and the
//! audit export's throughput ([`crate::audit::export_to_writer`], JSONL, whole log).

use std::time::Instant;

use rand::Rng;
use serde::Serialize;

use super::projections::{seed, BenchError, Numbering};
use super::ScratchDb;
use crate::projections::{queries, Projections, RunnerSettings};
use crate::store::{scratch, Db};

#[derive(Debug, Clone, Serialize)]
pub struct QueriesReport {
    pub bench: &'static str,
    pub events: u64,
    pub invoices: usize,
    pub seed_seconds: f64,
    pub projection_seconds: f64,
    pub samples: usize,
    pub history_p50_ms: f64,
    pub history_p99_ms: f64,
    pub history_max_ms: f64,
    pub mean_entries: f64,
    pub export_mb_per_sec: f64,
    pub export_events_per_sec: f64,
    pub cores: usize,
}

impl QueriesReport {
    pub fn text(&self) -> String {
        format!(
            "ledger: {} events, {} invoices (seeded in {:.1} s, projected in {:.1} s; {} cores)\n\
             history query  p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   (target p99 < 20 ms; {} samples, {:.1} entries each)\n\
             audit export   {:>7.1} MB/s   {:>9.0} events/s (JSONL, whole log)\n",
            self.events,
            self.invoices,
            self.seed_seconds,
            self.projection_seconds,
            self.cores,
            self.history_p50_ms,
            self.history_p99_ms,
            self.history_max_ms,
            self.samples,
            self.mean_entries,
            self.export_mb_per_sec,
            self.export_events_per_sec
        )
    }
}

pub async fn run(
    admin_url: &str,
    events: usize,
    samples: usize,
) -> Result<QueriesReport, BenchError> {
    let scratch = ScratchDb::create(admin_url).await?;
    let outcome = measure(&scratch.url, events, samples.max(1)).await;
    scratch.drop_database().await?;
    outcome
}

/// Counts what is written.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn measure(url: &str, events: usize, samples: usize) -> Result<QueriesReport, BenchError> {
    let db = Db::connect(url, 4).await?;
    db.migrate().await?;
    eprintln!("seeding {events} events…");
    let seeded = seed(&db, events, Numbering::Direct).await?;
    eprintln!("projecting…");
    let started = Instant::now();
    Projections::new(db.clone(), RunnerSettings::default())
        .rebuild(&[], 5_000, |_| {})
        .await?;
    let projection_seconds = started.elapsed().as_secs_f64();
    if let Db::Postgres(_) = &db {
        scratch::analyze(&db, true).await?;
    }
    eprintln!("timing {samples} history queries…");
    let mut rng = rand::rng();
    let mut times = Vec::with_capacity(samples);
    let mut entries = 0usize;
    for _ in 0..samples {
        let (tenant, invoice) = &seeded.invoices[rng.random_range(0..seeded.invoices.len())];
        let t = Instant::now();
        let h = queries::history(&db, tenant, invoice).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        entries += h.map(|h| h.entries.len()).unwrap_or(0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| times[((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1];

    eprintln!("exporting…");
    let query = crate::audit::ExportQuery::parse(None, None, None, Some("jsonl"))?;
    let mut counter = Counter(0);
    let started = Instant::now();
    let manifest = crate::audit::export_to_writer(&db, &query, &mut counter, |_, _| {}).await?;
    let export_seconds = started.elapsed().as_secs_f64().max(1e-9);
    let exported = manifest.records;
    db.close().await;
    Ok(QueriesReport {
        bench: "queries",
        events: seeded.events,
        invoices: seeded.invoices.len(),
        seed_seconds: seeded.seconds,
        projection_seconds,
        samples,
        history_p50_ms: pct(0.50),
        history_p99_ms: pct(0.99),
        history_max_ms: times.last().copied().unwrap_or(0.0),
        mean_entries: entries as f64 / samples as f64,
        export_mb_per_sec: counter.0 as f64 / 1e6 / export_seconds,
        export_events_per_sec: exported as f64 / export_seconds,
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    })
}
