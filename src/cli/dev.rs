//! The developer tools, behind the default-on `dev-tools` feature: `demo` (the whole product
//! in one process), `sandbox` (the Bling emulator on its own) and `bench` (the benchmarks). A
//! production build leaves them out: `cargo build --release --no-default-features`.

use std::net::SocketAddr;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use crate::config::DatabaseArgs;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the ledger (API and support console).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of the Bling sandbox.
    #[arg(long, default_value = "127.0.0.1:8089")]
    sandbox_listen: SocketAddr,
    /// The demo's SQLite file, recreated on every run.
    #[arg(long, default_value = "bling-ledger-demo.db")]
    database: std::path::PathBuf,
    /// Requests per second the sandbox allows per account (Bling: 3).
    #[arg(long, default_value_t = 3)]
    bling_rate: u32,
    /// Tell the story and exit instead of serving until Ctrl-C.
    #[arg(long)]
    exit: bool,
}

impl DemoArgs {
    pub async fn run(self) -> Result<()> {
        use std::io::IsTerminal;
        if self.bling_rate == 0 {
            bail!("--bling-rate must be at least 1");
        }
        let demo = crate::demo::run(crate::demo::DemoOptions {
            listen: self.listen,
            sandbox_listen: self.sandbox_listen,
            database_path: self.database,
            bling_rate_per_sec: self.bling_rate,
            progress: std::io::stderr().is_terminal(),
        })
        .await?;
        if self.exit {
            demo.server.stop().await?;
            demo.sandbox.shutdown().await;
            return Ok(());
        }
        crate::demo::print_where_to_look(&demo);
        let _sandbox = demo.sandbox;
        demo.server.run_until_signal().await?;
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, env = "BLING_SANDBOX_LISTEN", default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
}

impl SandboxArgs {
    pub async fn run(self) -> Result<()> {
        let config = crate::sandbox::SandboxConfig::from_env()?;
        crate::sandbox::serve_cli(self.listen, config).await
    }
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Invoices parked during a revocation, then a reconnection: drain time, request rate
    /// against the ceiling, 429s, Bling calls per invoice. Runs the sandbox in-process with
    /// its limit raised to --ceiling (Bling's real limit is 3 req/s) so it ends in minutes.
    Sync {
        /// Invoices billed while revoked.
        #[arg(long, default_value_t = 10_000)]
        invoices: usize,
        /// Requests per second the sandbox allows (and the client is set to).
        #[arg(long, default_value_t = 300)]
        ceiling: u32,
    },
    /// Projection rebuild rate against a raw COPY of the same events (PostgreSQL, scratch
    /// database).
    Projections {
        /// Events to seed.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
    },
    /// Support query latency (history p50/p99 over random invoices) on a large seeded ledger,
    /// and audit export throughput (PostgreSQL, scratch database).
    Queries {
        /// Events to seed (10000000 for the 10 M target).
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// History queries to time.
        #[arg(long, default_value_t = 2_000)]
        samples: usize,
    },
    /// A fleet of shops, each with Bling's 3 req/s: some with a backlog, the rest billing a
    /// trickle. Small shops' bill -> synced latency, the aggregate Bling call rate against the
    /// fleet's ceiling and against the machine's own (every limit off), 429s, calls per
    /// invoice (PostgreSQL, scratch databases).
    Fleet {
        /// Shops, each its own Bling account.
        #[arg(long, default_value_t = 100)]
        shops: usize,
        /// Shops with a backlog.
        #[arg(long, default_value_t = 12)]
        backlog_shops: usize,
        /// Invoices in each backlog.
        #[arg(long, default_value_t = 150)]
        backlog: usize,
        /// The other shops bill one invoice every this many seconds.
        #[arg(long, default_value_t = 10)]
        trickle_secs: u64,
        /// Server instances on the one database (each its own pool, worker and leases).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Give up waiting for the sync after this many seconds.
        #[arg(long, default_value_t = 900)]
        max_wait_secs: u64,
    },
    /// Webhook deliveries at a fixed rate while the pet shop ingests: answer time p50/p99 and
    /// the ingest rate against the same run without the flood (PostgreSQL, scratch database).
    Webhooks {
        /// Deliveries per second sent (open loop).
        #[arg(long, default_value_t = 500)]
        rate: u32,
        /// Concurrent ingest clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Seconds per phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// HTTP ingest rate against raw single-row INSERTs at the same concurrency (PostgreSQL).
    ///
    /// Creates a scratch database on the server named by --database-url and drops it after.
    Ingest {
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Seconds per phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Notifications fanned out to a local receiver that verifies every signature:
    /// deliveries/s against raw signed POSTs, and the latency added from event to receiver at
    /// a steady rate (target p95 < 1 s at 200 events/s). PostgreSQL, in a scratch database.
    Notify {
        #[arg(long, default_value_t = 10)]
        tenants: usize,
        #[arg(long, default_value_t = 2)]
        endpoints_per_tenant: usize,
        /// Events per second in the steady phase.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Seconds of the steady phase.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Messages in the drain phase's backlog.
        #[arg(long, default_value_t = 1000)]
        backlog: usize,
    },
}

impl BenchCommand {
    pub async fn run(self, database: &DatabaseArgs) -> Result<()> {
        match self {
            BenchCommand::Fleet {
                shops,
                backlog_shops,
                backlog,
                trickle_secs,
                workers,
                max_wait_secs,
            } => {
                if !database.is_postgres() {
                    bail!("bench fleet runs on PostgreSQL: pass --database-url postgres://…");
                }
                if shops == 0 || backlog_shops > shops || trickle_secs == 0 || workers == 0 {
                    bail!("--shops >= 1, --backlog-shops <= --shops, --trickle-secs and --workers >= 1");
                }
                eprintln!("bench fleet: {shops} shops, {backlog_shops} x {backlog} invoices, a trickle every {trickle_secs} s, {workers} worker(s)…");
                let report = crate::bench::fleet::run(
                    &database.database_url,
                    &crate::bench::fleet::FleetOptions {
                        shops,
                        backlog_shops,
                        backlog,
                        trickle_every: std::time::Duration::from_secs(trickle_secs),
                        workers,
                        max_wait: std::time::Duration::from_secs(max_wait_secs),
                    },
                )
                .await?;
                print!("{}", report.text());
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
            BenchCommand::Sync { invoices, ceiling } => {
                if invoices == 0 || ceiling == 0 {
                    bail!("--invoices and --ceiling must be at least 1");
                }
                eprintln!(
                    "bench sync: {invoices} invoices parked, then drained at up to {ceiling} req/s…"
                );
                let r = crate::bench::sync::run(&database.database_url, invoices, ceiling).await?;
                println!("database              : {}", r.database);
                println!("parked in             : {:>10.1} s", r.park_seconds);
                println!("drained in            : {:>10.1} s", r.drain_seconds);
                println!("Bling calls           : {:>10}", r.bling_calls);
                println!("achieved rate         : {:>10.1} req/s of {} ({:.1}% of the ceiling; target >= 95%)", r.achieved_per_sec, r.ceiling_per_sec, r.ratio_of_ceiling * 100.0);
                println!(
                    "429 answers           : {:>10}  (target 0)",
                    r.too_many_requests
                );
                println!(
                    "calls per invoice     : {:>10.2}  (target <= 2)",
                    r.calls_per_invoice
                );
                println!("{}", serde_json::to_string(&r)?);
                Ok(())
            }
            BenchCommand::Projections { events } => {
                if !database.is_postgres() {
                    bail!("bench projections runs on PostgreSQL: pass --database-url postgres://…");
                }
                let report = crate::bench::projections::run(&database.database_url, events).await?;
                print!("{}", report.text());
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
            BenchCommand::Queries { events, samples } => {
                if !database.is_postgres() {
                    bail!("bench queries runs on PostgreSQL: pass --database-url postgres://…");
                }
                let report =
                    crate::bench::queries::run(&database.database_url, events, samples).await?;
                print!("{}", report.text());
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
            BenchCommand::Notify {
                tenants,
                endpoints_per_tenant,
                rate,
                seconds,
                backlog,
            } => {
                if !database.is_postgres() {
                    bail!("bench notify runs on PostgreSQL: pass --database-url postgres://…");
                }
                if tenants == 0
                    || endpoints_per_tenant == 0
                    || rate == 0
                    || seconds == 0
                    || backlog == 0
                {
                    bail!("--tenants, --endpoints-per-tenant, --rate, --seconds and --backlog must be at least 1");
                }
                eprintln!(
                    "bench notify: {tenants} shops × {endpoints_per_tenant} endpoints, backlog {backlog}, {rate} events/s for {seconds} s…"
                );
                let r = crate::bench::notify::run(
                    &database.database_url,
                    &crate::bench::notify::NotifyOptions {
                        tenants,
                        endpoints_per_tenant,
                        rate,
                        seconds,
                        backlog,
                    },
                )
                .await?;
                println!(
                    "baseline: raw signed POSTs     : {:>8.0} /s",
                    r.baseline_posts_per_sec
                );
                println!("drain: ledger deliveries       : {:>8.0} /s  ({} delivered, {:.0}% of baseline)", r.drain_deliveries_per_sec, r.drain_deliveries, r.drain_ratio * 100.0);
                println!(
                    "steady: events appended        : {:>8.0} /s  ({} events)",
                    r.steady_events_per_sec, r.steady_events
                );
                println!(
                    "steady: deliveries             : {:>8.0} /s",
                    r.steady_deliveries_per_sec
                );
                println!(
                    "event → receiver latency       : p50 {:.0} ms, p95 {:.0} ms (target < 1000), p99 {:.0} ms, max {:.0} ms",
                    r.latency_p50_ms, r.latency_p95_ms, r.latency_p99_ms, r.latency_max_ms
                );
                println!(
                    "lost {}, signature failures {}",
                    r.lost, r.signature_failures
                );
                println!("{}", serde_json::to_string(&r)?);
                Ok(())
            }
            BenchCommand::Webhooks {
                rate,
                clients,
                seconds,
            } => {
                if !database.is_postgres() {
                    bail!("bench webhooks runs on PostgreSQL: pass --database-url postgres://…");
                }
                if rate == 0 || clients == 0 || seconds == 0 {
                    bail!("--rate, --clients and --seconds must be at least 1");
                }
                eprintln!(
                    "bench webhooks: {rate}/s, {clients} ingest clients, {seconds} s per phase…"
                );
                let report = crate::bench::webhooks::run(
                    &database.database_url,
                    rate,
                    clients,
                    std::time::Duration::from_secs(seconds),
                )
                .await?;
                print!("{}", report.text());
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
            BenchCommand::Ingest { clients, seconds } => {
                if !database.is_postgres() {
                    bail!("bench ingest runs on PostgreSQL: pass --database-url postgres://…");
                }
                if clients == 0 || seconds == 0 {
                    bail!("--clients and --seconds must be at least 1");
                }
                eprintln!("bench ingest: {clients} clients, {seconds} s per phase…");
                let report = crate::bench::ingest::run(
                    &database.database_url,
                    clients,
                    std::time::Duration::from_secs(seconds),
                )
                .await?;
                println!(
                    "raw single-row INSERT : {:>10.0} rows/s",
                    report.raw_inserts_per_sec
                );
                println!(
                    "HTTP ingest (PUT)     : {:>10.0} requests/s",
                    report.ingest_requests_per_sec
                );
                println!(
                    "ratio ingest/raw      : {:>10.1}%  (target >= 35%)",
                    report.ratio * 100.0
                );
                println!("ingest errors         : {:>10}", report.ingest_errors);
                println!(
                    "ingest, in clear      : {:>10.0} requests/s; encrypting profiles costs {:.1}%",
                    report.unencrypted_ingest_requests_per_sec,
                    report.encryption_cost * 100.0
                );
                println!(
                    "ingest, sealing off   : {:>10.0} requests/s; sealing costs {:.1}%  (target <= 10%; both in clear)",
                    report.unsealed_ingest_requests_per_sec,
                    report.sealing_cost * 100.0
                );
                println!("{}", serde_json::to_string(&report)?);
                Ok(())
            }
        }
    }
}
