//! The `bling-ledger` command line: the edge where configuration is read, errors become
//! messages and exit codes, and everything else is the library's.
//!
//! One file per command family, each a clap type with its own `run`:
//!
//! - [`serve`]: `serve`, the whole service;
//! - [`connection`]: `connect`, `status`, `key new|rotate|new-signing|public`: the shops' Bling connections;
//! - [`sync`]: `replay`: queue failed, blocked or parked work again;
//! - [`log`]: `migrate`, `events`: the database and the event log;
//! - [`support`]: `history`, `failures`, `projections status|rebuild`: what support reads;
//! - [`audit`]: `export`, `verify` (a file, or `--database`), `checkpoint`: what auditors
//!   receive and check;
//! - [`token`]: `token new`: API tokens;
//! - [`forget`]: `forget`: LGPD erasure of one customer;
//! - [`dev`] (feature `dev-tools`, on by default): `demo`, `sandbox`, `bench`, which a
//!   production build (`--no-default-features`) leaves out.
//!
//! Bad arguments are refused with a message naming the flag and a non-zero exit.

pub mod audit;
pub mod connection;
#[cfg(feature = "dev-tools")]
pub mod dev;
pub mod forget;
pub mod log;
pub mod serve;
pub mod support;
pub mod sync;
pub mod token;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::DatabaseArgs;
use crate::store::Db;

/// Keeps a pet-shop system's customers and invoices in sync with Bling ERP (API v3), as an
/// event-sourced ledger that support and auditors can read.
#[derive(Debug, Parser)]
#[command(name = "bling-ledger", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Log format.
    #[arg(long, env = "BLING_LEDGER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole product in one process: a Bling sandbox, the ledger on SQLite, the sync
    /// worker and the support console. A demo pet shop connects through the real OAuth flow,
    /// lives through a day of customers and invoices, is revoked at lunch, reconnects, and its
    /// parked invoices replay. Keeps serving until Ctrl-C.
    #[cfg(feature = "dev-tools")]
    Demo(dev::DemoArgs),
    /// Run the HTTP API, the support console, the sync worker, the projections and the token
    /// renewal until Ctrl-C.
    ///
    /// Migrations run first. With no token configured on SQLite, a one-run admin token is
    /// printed; on PostgreSQL tokens are required.
    Serve(serve::ServeArgs),
    /// Print the URL that connects a tenant to Bling (open it in the shop's browser; Bling
    /// redirects to the running service's /oauth/callback).
    Connect(connection::ConnectArgs),
    /// Show the Bling connection of one tenant, or of every tenant that has one.
    Status(connection::StatusArgs),
    /// Run failed, blocked or parked sync work again (a running service picks it up).
    Replay(sync::ReplayArgs),
    /// Encryption keys for stored Bling tokens.
    Key {
        #[command(subcommand)]
        command: connection::KeyCommand,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the event log in global order.
    Events(log::EventsArgs),
    /// Export the event log for a time range as a hash-chained JSONL or CSV file, with a
    /// manifest beside it (FILE.manifest.json) holding the range, the count and the chain head.
    Export(audit::ExportCommand),
    /// Check an export offline: recompute its hash chain and compare it with its manifest
    /// (-m, or FILE.manifest.json when present). Exits non-zero on the first broken record.
    Verify(audit::VerifyArgs),
    /// Sign a checkpoint of the sealed log now (position, global head, Merkle root of the
    /// tenant heads, time), or list them (--list).
    Checkpoint(audit::CheckpointArgs),
    /// Run the bundled Bling API v3 sandbox (OAuth, contatos, pedidos de venda, situações,
    /// NF-e, rate limits, faults) until Ctrl-C. Configured by BLING_SANDBOX_* variables; see
    /// docs/sandbox.md.
    #[cfg(feature = "dev-tools")]
    Sandbox(dev::SandboxArgs),
    /// One invoice's sync history for support: every event, each Bling call with its status
    /// or error, the connection's state at that moment, the failure causes and what to do.
    History(support::HistoryArgs),
    /// The failure audit of a tenant, newest first: cause, message, evidence (--json).
    Failures(support::FailuresArgs),
    /// The support views (projections): status, rebuild.
    Projections {
        #[command(subcommand)]
        command: support::ProjectionsCommand,
    },
    /// Benchmarks that print a ratio against a baseline measured in the same run.
    #[cfg(feature = "dev-tools")]
    Bench {
        #[command(subcommand)]
        which: dev::BenchCommand,
    },
    /// Erase one customer's personal data (LGPD): destroys its data key, records the erasure,
    /// and removes its values from every table but the sealed log. The events, their seals
    /// and the invoices' fiscal facts stay. Exits non-zero for an unknown customer.
    Forget(forget::ForgetArgs),
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
}

/// Runs the command line: logging set up, the command run, an error printed with its causes
/// and turned into a failing exit code.
pub async fn main(cli: Cli) -> ExitCode {
    init_tracing(cli.log_format, default_log_filter(&cli.command));
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The demo tells its own story on stdout, warnings included (a revoked shop is part of it):
/// its logs speak up only for errors unless RUST_LOG asks for more.
fn default_log_filter(command: &Command) -> &'static str {
    match command {
        #[cfg(feature = "dev-tools")]
        Command::Demo(_) => "error",
        // Benchmarks print their figures on stdout; their logs only speak up for problems.
        #[cfg(feature = "dev-tools")]
        Command::Bench { .. } => "warn,sqlx=error",
        _ => "info,sqlx=warn,hyper=warn",
    }
}

async fn run(cli: Cli) -> Result<()> {
    let database = &cli.database;
    match cli.command {
        #[cfg(feature = "dev-tools")]
        Command::Demo(args) => args.run().await,
        Command::Serve(args) => args.run(database).await,
        Command::Connect(args) => args.run(database).await,
        Command::Status(args) => args.run(database).await,
        Command::Replay(args) => args.run(database).await,
        Command::Key { command } => command.run(database).await,
        Command::Migrate => log::migrate(database).await,
        Command::Events(args) => args.run(database).await,
        Command::Export(args) => args.run(database).await,
        Command::Verify(args) => args.run(database).await,
        Command::Checkpoint(args) => args.run(database).await,
        #[cfg(feature = "dev-tools")]
        Command::Sandbox(args) => args.run().await,
        Command::History(args) => args.run(database).await,
        Command::Failures(args) => args.run(database).await,
        Command::Projections { command } => command.run(database).await,
        #[cfg(feature = "dev-tools")]
        Command::Bench { which } => which.run(database).await,
        Command::Forget(args) => args.run(database).await,
        Command::Token { command } => command.run(),
    }
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

/// The database, connected and migrated: every command that reads or writes needs both.
pub async fn open(database: &DatabaseArgs) -> Result<Db> {
    let db = connect(database).await?;
    db.migrate().await.context("migrating")?;
    Ok(db)
}

/// The database, connected, with the master key installed (when one is configured) so that
/// customers' personal data reads in clear (`crate::store::personal`).
pub async fn connect(database: &DatabaseArgs) -> Result<Db> {
    let db = Db::connect(&database.database_url, database.max_connections)
        .await
        .with_context(|| format!("connecting to {}", redact_url(&database.database_url)))?;
    match crate::config::master_key_ring_from_env(&database.database_url)
        .context("the encryption key")?
    {
        Some(ring) => crate::store::personal::install_master_keys(&db, &ring),
        None => tracing::warn!(
            "no encryption key configured (BLING_LEDGER_ENCRYPTION_KEY): customers' personal \
             data is stored in clear, and encrypted profiles cannot be read"
        ),
    }
    Ok(db)
}

/// Hides a password in a database URL before it reaches a message.
pub fn redact_url(url: &str) -> String {
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
