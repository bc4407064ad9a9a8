//! The `bling-ledger` binary: a thin edge over the library's command line (`src/cli/`).

// No unwrap outside tests (see the workspace lints in Cargo.toml).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use clap::Parser;

// glibc's allocator spent a fifth of a projection rebuild in its own bookkeeping (arena
// locks, consolidation) when one thread frees what another allocated; mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    bling_ledger::cli::main(bling_ledger::cli::Cli::parse()).await
}
