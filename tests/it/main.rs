//! The integration tests: one binary, so the crate and its dependencies are linked once rather
//! than once per file. Each module is one concern; all of them use a real PostgreSQL (each test
//! its own database, `TEST_POSTGRES_URL`), the sandbox over real HTTP, and, for the console, a
//! real headless Chromium. Tests that touch the database run on both backends
//! (`both_backends!`).
//!
//! - [`support`]: a ledger with a fresh database on a random port ([`support::Stack`] adds the
//!   sandbox), tokens, bodies, `both_backends!`; [`sandbox_support`]: a sandbox and a tiny Bling
//!   client; [`raw`]: requests sent byte for byte;
//! - the ledger: [`http_api`], [`edges_fuzz`], [`event_log`], [`connection`], [`sync_engine`],
//!   [`fleet`] (the scheduler, fenced leases, renewals at fleet scale),
//!   [`projection_views`], [`audit_export`], [`sealed_log`], [`lgpd`] (erasure), [`console_browser`], [`notify`]
//!   (notifications, the change feed, reconnect links);
//! - Bling: [`bling_client`] (the client against the sandbox), [`bling_contract`] (recorded
//!   answers, the client's reading of them and the sandbox's shapes);
//! - the sandbox on its own: [`sandbox_resources`], [`sandbox_oauth`], [`sandbox_limits`],
//!   [`sandbox_faults`], [`sandbox_third_party`] (the public npm client).

#[macro_use]
mod support;
mod raw;
mod sandbox_support;

mod audit_export;
mod bling_client;
mod bling_contract;
mod connection;
mod console_browser;
mod edges_fuzz;
mod event_log;
mod fleet;
mod http_api;
mod lgpd;
mod notify;
mod projection_views;
mod sandbox_faults;
mod sandbox_limits;
mod sandbox_oauth;
mod sandbox_resources;
mod sandbox_third_party;
mod sealed_log;
mod sync_engine;
mod webhooks;
