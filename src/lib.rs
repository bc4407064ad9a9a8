//! bling-ledger: an event-sourced integration ledger between a pet-shop system and Bling ERP.
//!
//! The binary (`src/main.rs`) is a thin edge over this library so that integration tests in
//! `tests/` can start every part (API, sandbox, worker) in-process on random ports.
pub mod sandbox;
