//! The `bling-ledger` command: the edge where configuration is read, errors become messages
//! and exit codes, and everything else is the library's.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use bling_ledger::auth::{new_token, Role};
use bling_ledger::config::{ephemeral_admin, BlingArgs, DatabaseArgs, TokenArgs};
use bling_ledger::server::{Server, Settings};
use bling_ledger::store::log::LogFilter;
use bling_ledger::store::Db;
use clap::{Parser, Subcommand, ValueEnum};

/// Keeps a pet-shop system's customers and invoices in sync with Bling ERP (API v3), as an
/// event-sourced ledger that support and auditors can read.
#[derive(Debug, Parser)]
#[command(name = "bling-ledger", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    database: DatabaseArgs,

    /// Log format.
    #[arg(long, env = "BLING_LEDGER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole product in one process: a Bling sandbox, the ledger on SQLite, the sync
    /// worker and the support console. A demo pet shop connects through the real OAuth flow,
    /// lives through a day of customers and invoices, is revoked at lunch, reconnects, and its
    /// parked invoices replay. Keeps serving until Ctrl-C.
    Demo {
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
    },
    /// Run the HTTP API, the support console, the sync worker, the projections and the token
    /// renewal until Ctrl-C.
    ///
    /// Migrations run first. With no token configured on SQLite, a one-run admin token is
    /// printed; on PostgreSQL tokens are required.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "BLING_LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[command(flatten)]
        tokens: TokenArgs,
        #[command(flatten)]
        bling: BlingArgs,
    },
    /// Print the URL that connects a tenant to Bling (open it in the shop's browser; Bling
    /// redirects to the running service's /oauth/callback).
    Connect {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        bling: BlingArgs,
    },
    /// Show the Bling connection of one tenant, or of every tenant that has one.
    Status {
        #[arg(long)]
        tenant: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        bling: BlingArgs,
    },
    /// Run failed, blocked or parked sync work again (a running service picks it up).
    Replay {
        #[arg(long)]
        tenant: String,
        /// Only this invoice (and its customer's contato).
        #[arg(long)]
        invoice: Option<String>,
    },
    /// Encryption keys for stored Bling tokens.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the event log in global order.
    Events {
        /// Only this tenant's events.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this aggregate type (Customer, Invoice, BlingConnection).
        #[arg(long)]
        aggregate_type: Option<String>,
        /// Only this aggregate (e.g. `shop-1/inv-42`).
        #[arg(long)]
        aggregate_id: Option<String>,
        /// Start after this global position.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Print at most this many events.
        #[arg(long)]
        limit: Option<u64>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Export the event log for a time range as a hash-chained JSONL or CSV file, with a
    /// manifest beside it (FILE.manifest.json) holding the range, the count and the chain head.
    Export {
        /// Start of the range on recorded_at, inclusive: RFC 3339 or a date (UTC).
        #[arg(long)]
        from: Option<String>,
        /// End of the range, exclusive: RFC 3339, or a date (that whole day included).
        #[arg(long)]
        to: Option<String>,
        /// Only this tenant's events.
        #[arg(long)]
        tenant: Option<String>,
        /// jsonl or csv.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Replace CPF/CNPJ, names, e-mails, phones and addresses with salted digests.
        #[arg(long)]
        redact_pii: bool,
        /// The redaction salt (default: random, never written anywhere).
        #[arg(long, requires = "redact_pii")]
        salt: Option<String>,
        /// The export file.
        #[arg(short = 'o', long)]
        output: std::path::PathBuf,
        /// Where to write the manifest (default: OUTPUT.manifest.json).
        #[arg(short = 'm', long)]
        manifest: Option<std::path::PathBuf>,
    },
    /// Check an export offline: recompute its hash chain and compare it with its manifest
    /// (-m, or FILE.manifest.json when present). Exits non-zero on the first broken record.
    Verify {
        /// The export file (.jsonl or .csv).
        file: std::path::PathBuf,
        /// The manifest to check against.
        #[arg(short = 'm', long)]
        manifest: Option<std::path::PathBuf>,
    },
    /// Run the bundled Bling API v3 sandbox (OAuth, contatos, pedidos de venda, situações,
    /// NF-e, rate limits, faults) until Ctrl-C. Configured by BLING_SANDBOX_* variables; see
    /// docs/sandbox.md.
    Sandbox {
        /// Address to listen on.
        #[arg(long, env = "BLING_SANDBOX_LISTEN", default_value = "127.0.0.1:8089")]
        listen: SocketAddr,
    },
    /// One invoice's sync history for support: every event, each Bling call with its status
    /// or error, the connection's state at that moment, the failure causes and what to do.
    History {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        invoice: String,
        /// The HTTP API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The failure audit of a tenant, newest first: cause, message, evidence (--json).
    Failures {
        #[arg(long)]
        tenant: String,
        /// Only this cause (divergent_customer_record, authorization_expired,
        /// authorization_revoked, bling_rejected, bling_unavailable, rate_limited).
        #[arg(long)]
        cause: Option<String>,
        /// From this time (RFC 3339 or a date, UTC), inclusive.
        #[arg(long)]
        since: Option<String>,
        /// Until this time, exclusive (a date includes that whole day).
        #[arg(long)]
        until: Option<String>,
        /// At most this many failures.
        #[arg(long, default_value_t = 200)]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The support views (projections): status, rebuild.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Benchmarks that print a ratio against a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
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
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Checkpoint, log head and lag of each projection.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Empty a projection (all when no NAME) and replay the whole log into it.
    Rebuild {
        /// invoice_sync, timeline, failures, connections or customers.
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Print a new random AES-256 key (base64) for BLING_LEDGER_ENCRYPTION_KEY.
    New,
    /// Re-encrypt every stored token under the current key. Set the new key as
    /// BLING_LEDGER_ENCRYPTION_KEY and the old one as BLING_LEDGER_PREVIOUS_ENCRYPTION_KEY,
    /// run this, then remove the previous key.
    Rotate {
        #[command(flatten)]
        bling: Box<BlingArgs>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token: prints the token once, and the line to add to the tokens file.
    New {
        /// A name for the caller, recorded as the actor of its events.
        #[arg(long)]
        name: String,
        /// ingest, support, auditor or admin.
        #[arg(long)]
        role: String,
        /// The tenant it may act on, or `*` for all.
        #[arg(long)]
        tenant: String,
    },
}

fn init_tracing(format: LogFormat, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

// glibc's allocator spent a fifth of a projection rebuild in its own bookkeeping (arena
// locks, consolidation) when one thread frees what another allocated; mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo tells its own story on stdout; its logs only speak up for problems.
    let default_filter = match cli.command {
        Command::Demo { .. } => "warn,sqlx=error",
        _ => "info,sqlx=warn,hyper=warn",
    };
    init_tracing(cli.log_format, default_filter);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo {
            listen,
            sandbox_listen,
            database,
            bling_rate,
            exit,
        } => {
            use std::io::IsTerminal;
            if bling_rate == 0 {
                bail!("--bling-rate must be at least 1");
            }
            let demo = bling_ledger::demo::run(bling_ledger::demo::DemoOptions {
                listen,
                sandbox_listen,
                database_path: database,
                bling_rate_per_sec: bling_rate,
                progress: std::io::stderr().is_terminal(),
            })
            .await?;
            if exit {
                demo.server.stop().await?;
                demo.sandbox.shutdown().await;
                return Ok(());
            }
            bling_ledger::demo::print_where_to_look(&demo);
            let _sandbox = demo.sandbox;
            demo.server.run_until_signal().await?;
            Ok(())
        }
        Command::Serve {
            listen,
            tokens,
            bling,
        } => serve(&cli.database, listen, &tokens, &bling).await,
        Command::Connect { tenant, bling } => connect_tenant(&cli.database, &tenant, &bling).await,
        Command::Status {
            tenant,
            json,
            bling,
        } => status(&cli.database, tenant, json, &bling).await,
        Command::Replay { tenant, invoice } => {
            let tenant = aggregates::ids::TenantId::parse(&tenant)
                .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
            if let Some(i) = &invoice {
                aggregates::ids::InvoiceId::parse(i)
                    .map_err(|e| anyhow::anyhow!("--invoice: {e}"))?;
            }
            let db = connect(&cli.database).await?;
            db.migrate().await.context("migrating")?;
            let n = bling_ledger::sync::queue::replay(
                &db,
                tenant.as_str(),
                invoice.as_deref(),
                "replay requested from the CLI",
            )
            .await?;
            println!("{n} job(s) queued again for {tenant}; a running `serve` picks them up within a second");
            Ok(())
        }
        Command::Key {
            command: KeyCommand::New,
        } => {
            println!(
                "{}",
                bling_ledger::oauth::crypto::EncryptionKey::generate_base64()
            );
            Ok(())
        }
        Command::Key {
            command: KeyCommand::Rotate { bling },
        } => {
            let db = connect(&cli.database).await?;
            db.migrate().await.context("migrating")?;
            let ring = bling.key_ring(&cli.database.database_url)?;
            let store = bling_ledger::oauth::credentials::CredentialStore::new(db, ring.clone());
            let changed = store.reencrypt_all().await?;
            println!(
                "re-encrypted the tokens of {changed} tenant(s) under key {}",
                ring.current_id()
            );
            Ok(())
        }
        Command::Migrate => {
            let db = connect(&cli.database).await?;
            db.migrate().await.context("migrating")?;
            println!("migrations applied ({})", db.backend_name());
            Ok(())
        }
        Command::Events {
            tenant,
            aggregate_type,
            aggregate_id,
            after,
            limit,
            json,
        } => {
            let db = connect(&cli.database).await?;
            db.migrate().await.context("migrating")?;
            let filter = LogFilter {
                tenant,
                aggregate_type,
                aggregate_id,
            };
            print_events(&db, &filter, after, limit, json).await
        }
        Command::Export {
            from,
            to,
            tenant,
            format,
            redact_pii,
            salt,
            output,
            manifest,
        } => {
            let args = bling_ledger::audit::cli::ExportArgs {
                from,
                to,
                tenant,
                format,
                redact_pii,
                salt,
                output,
                manifest,
            };
            args.check()?;
            let db = connect(&cli.database).await?;
            db.migrate().await.context("migrating")?;
            let outcome = bling_ledger::audit::cli::export(&db, &args).await?;
            print!("{}", outcome.summary());
            Ok(())
        }
        Command::Verify { file, manifest } => {
            let report = bling_ledger::audit::cli::verify(&file, manifest.as_deref())?;
            print!("{report}");
            if !report.ok() {
                bail!("{} does not verify", file.display());
            }
            Ok(())
        }
        Command::Sandbox { listen } => {
            let config = bling_ledger::sandbox::SandboxConfig::from_env()?;
            bling_ledger::sandbox::serve_cli(listen, config).await
        }
        Command::Bench { which } => bench(&cli.database, which).await,
        Command::History {
            tenant,
            invoice,
            json,
        } => {
            let db = connect(&cli.database).await?;
            db.migrate().await.context("migrating")?;
            print!(
                "{}",
                bling_ledger::projections::cli::history(&db, &tenant, &invoice, json).await?
            );
            Ok(())
        }
        Command::Failures {
            tenant,
            cause,
            since,
            until,
            limit,
            json,
        } => {
            let db = connect(&cli.database).await?;
            db.migrate().await.context("migrating")?;
            let out = bling_ledger::projections::cli::failures(
                &db,
                &tenant,
                cause.as_deref(),
                since.as_deref(),
                until.as_deref(),
                limit,
                json,
            )
            .await?;
            print!("{out}");
            Ok(())
        }
        Command::Projections { command } => {
            let db = connect(&cli.database).await?;
            db.migrate().await.context("migrating")?;
            let out = match command {
                ProjectionsCommand::Status { json } => {
                    bling_ledger::projections::cli::status(&db, json).await?
                }
                ProjectionsCommand::Rebuild { name } => {
                    bling_ledger::projections::cli::rebuild(&db, name.as_deref()).await?
                }
            };
            print!("{out}");
            Ok(())
        }
        Command::Token {
            command: TokenCommand::New { name, role, tenant },
        } => {
            let Some(role) = Role::parse(&role) else {
                bail!("--role must be one of ingest, support, auditor, admin (got {role:?})");
            };
            if tenant != "*" && aggregates::ids::TenantId::parse(&tenant).is_err() {
                bail!("--tenant must be a tenant id (letters, digits, . _ -) or *");
            }
            let (token, entry) = new_token(&name, role, &tenant);
            println!("token (shown once, give it to the caller): {token}");
            println!("tokens file entry: {}", serde_json::to_string(&entry)?);
            Ok(())
        }
    }
}

async fn bench(database: &DatabaseArgs, which: BenchCommand) -> Result<()> {
    match which {
        BenchCommand::Sync { invoices, ceiling } => {
            if invoices == 0 || ceiling == 0 {
                bail!("--invoices and --ceiling must be at least 1");
            }
            eprintln!(
                "bench sync: {invoices} invoices parked, then drained at up to {ceiling} req/s…"
            );
            let r =
                bling_ledger::bench::sync::run(&database.database_url, invoices, ceiling).await?;
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
            let report =
                bling_ledger::bench::projections::run(&database.database_url, events).await?;
            print!("{}", report.text());
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        BenchCommand::Queries { events, samples } => {
            if !database.is_postgres() {
                bail!("bench queries runs on PostgreSQL: pass --database-url postgres://…");
            }
            let report =
                bling_ledger::bench::queries::run(&database.database_url, events, samples).await?;
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
            let report = bling_ledger::bench::ingest::run(
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
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

async fn connect(database: &DatabaseArgs) -> Result<Db> {
    Db::connect(&database.database_url, database.max_connections)
        .await
        .with_context(|| format!("connecting to {}", redact_url(&database.database_url)))
}

/// Hides a password in a database URL before it reaches a message.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn connect_tenant(database: &DatabaseArgs, tenant: &str, bling: &BlingArgs) -> Result<()> {
    let tenant =
        aggregates::ids::TenantId::parse(tenant).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let Some(settings) = bling.auth_settings(&database.database_url)? else {
        bail!("no Bling app configured: set BLING_CLIENT_ID and BLING_CLIENT_SECRET");
    };
    let db = connect(database).await?;
    db.migrate().await.context("migrating")?;
    let ledger = bling_ledger::ledger::Ledger::new(db.clone());
    let auth = bling_ledger::oauth::BlingAuth::new(db, ledger, settings)?;
    let url = auth
        .connector
        .start(&tenant, bling_ledger::ledger::Actor::Support("cli".into()))
        .await?;
    println!(
        "Open this URL in the shop's browser (valid {} minutes, once):",
        auth.settings.state_ttl.as_secs() / 60
    );
    println!("{url}");
    Ok(())
}

async fn status(
    database: &DatabaseArgs,
    tenant: Option<String>,
    json: bool,
    bling: &BlingArgs,
) -> Result<()> {
    let db = connect(database).await?;
    db.migrate().await.context("migrating")?;
    let ledger = bling_ledger::ledger::Ledger::new(db.clone());
    let creds = bling
        .key_ring(&database.database_url)
        .ok()
        .map(|ring| bling_ledger::oauth::credentials::CredentialStore::new(db.clone(), ring));
    let tenants: Vec<String> = match tenant {
        Some(t) => vec![t],
        None => bling_ledger::on_db!(
            &db,
            as (String,),
            "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'BlingConnection' ORDER BY 1",
            [],
            fetch_all
        )?
        .into_iter()
        .map(|(t,)| t)
        .collect(),
    };
    if tenants.is_empty() {
        println!("no tenant has a Bling connection yet (bling-ledger connect --tenant T)");
    }
    for raw in tenants {
        let tenant =
            aggregates::ids::TenantId::parse(&raw).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
        let s = bling_ledger::oauth::connection_status(&ledger, creds.as_ref(), &tenant).await?;
        if json {
            println!("{}", serde_json::to_string(&s)?);
        } else {
            let expires = match (s.access_expires_at, s.expires_in_seconds) {
                (Some(at), Some(secs)) => format!("{at} (in {}m)", secs / 60),
                (Some(at), None) => at.to_string(),
                _ => "-".into(),
            };
            println!("{:<16} {:<22} expires {expires}", s.tenant, s.state);
            if let Some(r) = &s.last_refresh_at {
                println!("{:<16} last refresh {r}", "");
            }
            if let Some(e) = &s.last_error {
                println!("{:<16} last error: {e}", "");
            }
            if let Some(r) = &s.revoked {
                println!(
                    "{:<16} revoked: {} answered {} {} ({})",
                    "", r.call, r.status, r.error_type, r.message
                );
            }
            if let Some(f) = &s.last_authorization_failure {
                println!(
                    "{:<16} last authorization failed: {} answered {} {} ({})",
                    "", f.call, f.status, f.error_type, f.message
                );
            }
        }
    }
    Ok(())
}

async fn serve(
    database: &DatabaseArgs,
    listen: SocketAddr,
    tokens: &TokenArgs,
    bling: &BlingArgs,
) -> Result<()> {
    let mut registry = tokens.load()?;
    if registry.is_empty() {
        if database.is_postgres() {
            bail!(
                "no API tokens configured: set BLING_LEDGER_TOKENS_FILE (create entries with \
                 `bling-ledger token new`)"
            );
        }
        let (token, with_admin) = ephemeral_admin(registry);
        registry = with_admin;
        eprintln!(
            "No API tokens configured; this run accepts the admin token:\n  {token}\n\
             (configure BLING_LEDGER_TOKENS_FILE for anything but a local trial)"
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let settings = Settings {
        database_url: database.database_url.clone(),
        max_connections: database.max_connections,
        tokens: registry,
        auth: bling.auth_settings(&database.database_url)?,
        sync: bling.sync_config(),
    };
    let server = Server::start(settings, listener)
        .await
        .with_context(|| format!("starting on {}", redact_url(&database.database_url)))?;
    eprintln!("bling-ledger listening on http://{}", server.addr);
    server.run_until_signal().await?;
    Ok(())
}

async fn print_events(
    db: &Db,
    filter: &LogFilter,
    mut after: i64,
    limit: Option<u64>,
    json: bool,
) -> Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    if !json {
        writeln!(
            out,
            "{:>8}  {:<27}  {:<12}  {:<40}  {:<22}  actor",
            "position", "recorded_at", "tenant", "aggregate#sequence", "event"
        )?;
    }
    loop {
        let page = db.read_from(after, 1000, filter).await?;
        if page.is_empty() {
            break;
        }
        for event in page {
            after = event.position;
            if limit.is_some_and(|l| printed >= l) {
                out.flush()?;
                return Ok(());
            }
            printed += 1;
            if json {
                writeln!(out, "{}", serde_json::to_string(&event)?)?;
            } else {
                let actor = event
                    .metadata
                    .get("actor")
                    .and_then(|a| a.as_str())
                    .unwrap_or("");
                writeln!(
                    out,
                    "{:>8}  {:<27}  {:<12}  {:<40}  {:<22}  {}",
                    event.position,
                    event
                        .recorded_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    event.tenant().unwrap_or("-"),
                    format!(
                        "{}/{}#{}",
                        event.aggregate_type, event.aggregate_id, event.sequence
                    ),
                    event.event_type,
                    actor
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
