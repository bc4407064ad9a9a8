//! The domain of bling-ledger, pure: no I/O, no clock, no randomness.
//!
//! Each aggregate lives in its own file with its commands, events and rules:
//! [`customer`], [`invoice`] and [`connection`]. Value types that make wrong states
//! unrepresentable (tax ids, CEP, UF, money, identifiers) live beside them.

// No unwrap outside tests (see the workspace lints in Cargo.toml).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod address;
pub mod connection;
pub mod customer;
pub mod ids;
pub mod invoice;
pub mod money;
pub mod problems;
pub mod sync;
pub mod tax_id;

pub use problems::{FieldProblem, Problems};
