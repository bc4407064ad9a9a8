//! A local server that behaves like the Bling API v3 as public evidence shows it (see
//! `docs/sandbox.md`, which names the source of every behaviour): OAuth authorization server,
//! contatos, pedidos de venda, formas de pagamento, situações, NF-e and the company per Bling
//! account, Bling's limits, seeded fault injection, and a control
//! plane under `/_sandbox` for tests, benchmarks and the demo.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use bling_ledger::sandbox::{Sandbox, SandboxConfig};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let sandbox = Sandbox::start(SandboxConfig::default(), listener).await?;
//! println!("point the Bling client at {}", sandbox.base_url());
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```

mod calllog;
mod codes;
mod config;
mod conn;
mod contatos;
mod control;
mod control_resources;
mod control_webhooks;
mod empresa;
mod encoding;
mod error;
mod faults;
mod formas;
mod limits;
mod money;
mod nfe;
mod oauth;
mod pedidos;
mod pipeline;
mod query;
mod server;
mod situacoes;
mod state;
mod validation;
mod webhooks;

pub use calllog::CallRecord;
pub use config::{AccountConfig, ClientApp, IpBlockConfig, SandboxConfig, SituacaoIds};
pub use control::{AccountSummary, SituacaoInfo};
pub use error::SandboxError;
pub use faults::{FaultConfig, FaultKind, FaultRule};
pub use nfe::SefazRules;
pub use oauth::TokenSet;
pub use server::{serve_cli, Sandbox};
pub use webhooks::{
    signature as webhook_signature, DeliveryAttempt, WebhookFaults, WebhookSubscription,
};

/// Id of the sales-order ("Vendas") module in `/situacoes/modulos`.
pub const MODULO_VENDAS: i64 = situacoes::MODULO_VENDAS;

/// Id of the purchase-order ("Compras") module, listed before Vendas in `/situacoes/modulos`.
pub const MODULO_COMPRAS: i64 = situacoes::MODULO_COMPRAS;
