//! bling-ledger: an event-sourced integration ledger between a pet-shop system and Bling ERP.
//!
//! The binary (`src/main.rs`) is a thin edge over this library so that integration tests in
//! `tests/` can start every part (API, sandbox, worker) in-process on random ports.
//!
//! - [`store`]: the database (PostgreSQL or SQLite), the global event log, idempotency keys;
//! - [`ledger`]: runs commands against the aggregates of the `aggregates` crate;
//! - [`api`]: the HTTP API; [`auth`]: its bearer tokens; [`metrics`]: Prometheus text;
//! - [`server`]: wiring it all up;
//! - [`sandbox`]: a Bling API v3 server for tests, benchmarks and the demo.

pub mod api;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod bling;
pub mod config;
pub mod demo;
pub mod ledger;
pub mod metrics;
pub mod oauth;
pub mod projections;
pub mod sandbox;
pub mod server;
pub mod store;
pub mod sync;
