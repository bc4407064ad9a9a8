//! The `bling-ledger` command: the edge where configuration is read, errors become messages
//! and exit codes, and everything else is the library's.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use bling_ledger::auth::{new_token, Role};
use bling_ledger::config::{ephemeral_admin, DatabaseArgs, TokenArgs};
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
    /// Run the HTTP API (and, with later releases, the sync worker) until Ctrl-C.
    ///
    /// Migrations run first. With no token configured on SQLite, a one-run admin token is
    /// printed; on PostgreSQL tokens are required.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "BLING_LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[command(flatten)]
        tokens: TokenArgs,
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
    /// Run the bundled Bling API v3 sandbox (OAuth, contatos, pedidos de venda, situações,
    /// NF-e, rate limits, faults) until Ctrl-C. Configured by BLING_SANDBOX_* variables; see
    /// docs/sandbox.md.
    Sandbox {
        /// Address to listen on.
        #[arg(long, env = "BLING_SANDBOX_LISTEN", default_value = "127.0.0.1:8089")]
        listen: SocketAddr,
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

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
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
        Command::Serve { listen, tokens } => serve(&cli.database, listen, &tokens).await,
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
        Command::Sandbox { listen } => {
            let config = bling_ledger::sandbox::SandboxConfig::from_env()?;
            bling_ledger::sandbox::serve_cli(listen, config).await
        }
        Command::Bench { which } => bench(&cli.database, which).await,
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
            println!("raw single-row INSERT : {:>10.0} rows/s", report.raw_inserts_per_sec);
            println!("HTTP ingest (PUT)     : {:>10.0} requests/s", report.ingest_requests_per_sec);
            println!("ratio ingest/raw      : {:>10.1}%  (target >= 35%)", report.ratio * 100.0);
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

async fn serve(database: &DatabaseArgs, listen: SocketAddr, tokens: &TokenArgs) -> Result<()> {
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
                let actor = event.metadata.get("actor").and_then(|a| a.as_str()).unwrap_or("");
                writeln!(
                    out,
                    "{:>8}  {:<27}  {:<12}  {:<40}  {:<22}  {}",
                    event.position,
                    event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    event.tenant().unwrap_or("-"),
                    format!("{}/{}#{}", event.aggregate_type, event.aggregate_id, event.sequence),
                    event.event_type,
                    actor
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
