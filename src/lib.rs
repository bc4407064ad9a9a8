//! bling-ledger: an event-sourced integration ledger between a pet-shop system and Bling ERP
//! (API v3). The binary (`src/main.rs`) is a thin edge over this library, so that integration
//! tests start every part (API, sandbox, worker) in-process on random ports.
//!
//! # Layout
//! Read in this order to follow a request from the pet-shop system to Bling and back:
//!
//! - `aggregates` (crate): the pure domain — customers, invoices, the Bling connection, their
//!   commands, events and validation, and the one definition of each failure cause;
//! - [`api`]: the HTTP API (axum), one module per resource, and the support console;
//!   [`auth`]: its bearer tokens and roles;
//! - [`ledger`]: runs commands against the aggregates and appends their events;
//! - [`store`]: the database (PostgreSQL or SQLite): the global event log and its sequencer,
//!   idempotency keys; all SQL lives here;
//! - `projections` (crate) and [`projections`]: read models as pure reducers, and their
//!   runner, storage and queries;
//! - [`sync`]: the worker that follows the log and makes Bling match (jobs, mapping, payment
//!   methods, the to-do list and its leases);
//! - [`bling`]: Bling API v3 as a library — typed models, client, rate limiter, retries, error
//!   classification; it touches no database;
//! - [`webhooks`]: Bling talks back — deliveries stored, then applied (NF-e states, orders
//!   changed in Bling);
//! - [`oauth`]: the shops' connections — consent, encrypted credentials, renewal, revocation;
//! - [`audit`]: the verifiable export and its offline check;
//! - [`erasure`]: LGPD erasure — customers' data keys, `forget`, and keeping personal values
//!   out of Bling's evidence;
//! - [`notify`]: telling the pet-shop system — signed notifications, the change feed, and
//!   the shops' self-service reconnect links;
//! - [`server`]: wiring it all into one running service; [`config`]: its configuration;
//!   [`metrics`]: Prometheus text;
//! - [`cli`]: the command line, one file per command family;
//! - behind the default-on `dev-tools` feature: [`sandbox`] (a Bling API v3 emulator that
//!   uses nothing of the ledger), [`stack`] (the one place the ledger is wired to it, for
//!   tests, the demo and the benchmarks), [`demo`] and [`bench`].

// No unwrap outside tests (see the workspace lints in Cargo.toml).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod api;
pub mod audit;
pub mod auth;
#[cfg(feature = "dev-tools")]
pub mod bench;
pub mod bling;
pub mod cli;
pub mod config;
#[cfg(feature = "dev-tools")]
pub mod demo;
pub mod erasure;
pub mod ledger;
pub mod metrics;
pub mod notify;
pub mod oauth;
pub mod projections;
#[cfg(feature = "dev-tools")]
pub mod sandbox;
pub mod server;
#[cfg(feature = "dev-tools")]
pub mod stack;
pub mod store;
pub mod sync;
pub mod webhooks;
