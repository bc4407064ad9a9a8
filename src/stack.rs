//! The ledger wired to a Bling sandbox over real HTTP: the one place the two are put together,
//! for the integration tests, the demo and the benchmarks (behind the `dev-tools` feature).
//!
//! ```no_run
//! # async fn demo() -> Result<(), bling_ledger::stack::StackError> {
//! use bling_ledger::stack::StackBuilder;
//! let stack = StackBuilder::new("sqlite://demo.db")
//!     .sandbox(|s| s.rate_limit_per_sec = 0)
//!     .start()
//!     .await?;
//! println!("ledger {}, Bling {}", stack.server.base_url(), stack.sandbox.base_url());
//! stack.stop().await?;
//! # Ok(()) }
//! ```
//!
//! The sandbox registers one Bling app (the demo's client id and secret) whose redirect URI is
//! the ledger's own `/oauth/callback`, and the ledger is configured with that app, the
//! sandbox's OAuth endpoints and its API: a shop connects through the real consent flow.
//! Everything else is the product's defaults, changed only where a caller says so.

use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::TokenRegistry;
use crate::oauth::crypto::{EncryptionKey, KeyRing, Secret};
use crate::oauth::endpoint::OAuthSettings;
use crate::oauth::tokens::RenewalPolicy;
use crate::oauth::AuthSettings;
use crate::sandbox::{ClientApp, Sandbox, SandboxConfig};
use crate::server::{ServeError, Server, Settings, SyncConfig};

/// Why a stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("binding a listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("the encryption key: {0}")]
    Key(#[from] crate::oauth::crypto::CryptoError),
    #[error("starting the ledger: {0}")]
    Serve(#[from] ServeError),
}

/// A running ledger and the sandbox it talks to.
pub struct Stack {
    pub sandbox: Sandbox,
    pub server: Server,
}

impl Stack {
    /// Stops the ledger, then the sandbox.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.server.stop().await?;
        self.sandbox.shutdown().await;
        Ok(())
    }
}

type SandboxTweak = Box<dyn FnOnce(&mut SandboxConfig) + Send>;
type AuthTweak = Box<dyn FnOnce(&mut AuthSettings) + Send>;
type SyncTweak = Box<dyn FnOnce(&mut SyncConfig) + Send>;
type NotifyTweak = Box<dyn FnOnce(&mut crate::notify::NotifySettings) + Send>;

/// Builds a [`Stack`]: the product's defaults, the caller's changes on top.
pub struct StackBuilder {
    database_url: String,
    max_connections: u32,
    tokens: TokenRegistry,
    keys: Option<KeyRing>,
    ledger_listener: Option<TcpListener>,
    sandbox_listener: Option<TcpListener>,
    sandbox: Vec<SandboxTweak>,
    auth: Vec<AuthTweak>,
    sync: Vec<SyncTweak>,
    notify: Vec<NotifyTweak>,
}

impl StackBuilder {
    /// The ledger on `database_url`, both servers on random local ports, a fresh key.
    pub fn new(database_url: &str) -> StackBuilder {
        StackBuilder {
            database_url: database_url.to_string(),
            max_connections: 8,
            tokens: TokenRegistry::default(),
            keys: None,
            ledger_listener: None,
            sandbox_listener: None,
            sandbox: Vec::new(),
            auth: Vec::new(),
            sync: Vec::new(),
            notify: Vec::new(),
        }
    }

    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// The API tokens the ledger accepts.
    pub fn tokens(mut self, tokens: TokenRegistry) -> Self {
        self.tokens = tokens;
        self
    }

    /// The key that encrypts stored Bling tokens (default: a new random one).
    pub fn keys(mut self, keys: KeyRing) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Where the ledger listens (default: a random port on 127.0.0.1).
    pub fn ledger_listener(mut self, listener: TcpListener) -> Self {
        self.ledger_listener = Some(listener);
        self
    }

    /// Where the sandbox listens (default: a random port on 127.0.0.1).
    pub fn sandbox_listener(mut self, listener: TcpListener) -> Self {
        self.sandbox_listener = Some(listener);
        self
    }

    /// Changes the sandbox's configuration (Bling's behaviour: limits, faults, accounts).
    pub fn sandbox(mut self, f: impl FnOnce(&mut SandboxConfig) + Send + 'static) -> Self {
        self.sandbox.push(Box::new(f));
        self
    }

    /// Changes the connection settings (renewal, token budget, timeouts).
    pub fn auth(mut self, f: impl FnOnce(&mut AuthSettings) + Send + 'static) -> Self {
        self.auth.push(Box::new(f));
        self
    }

    /// Changes the sync worker's settings and its Bling client's.
    pub fn sync(mut self, f: impl FnOnce(&mut SyncConfig) + Send + 'static) -> Self {
        self.sync.push(Box::new(f));
        self
    }

    /// Changes the notifier's settings (retry schedule, link lifetime).
    pub fn notify(
        mut self,
        f: impl FnOnce(&mut crate::notify::NotifySettings) + Send + 'static,
    ) -> Self {
        self.notify.push(Box::new(f));
        self
    }

    pub async fn start(self) -> Result<Stack, StackError> {
        let ledger_listener = match self.ledger_listener {
            Some(l) => l,
            None => TcpListener::bind("127.0.0.1:0").await?,
        };
        let ledger_addr = ledger_listener.local_addr()?;
        let mut sandbox_config = SandboxConfig {
            clients: vec![ClientApp {
                client_id: SandboxConfig::DEMO_CLIENT_ID.to_string(),
                client_secret: SandboxConfig::DEMO_CLIENT_SECRET.to_string(),
                redirect_uri: format!("http://{ledger_addr}/oauth/callback"),
            }],
            ..SandboxConfig::default()
        };
        for tweak in self.sandbox {
            tweak(&mut sandbox_config);
        }
        let sandbox_listener = match self.sandbox_listener {
            Some(l) => l,
            None => TcpListener::bind("127.0.0.1:0").await?,
        };
        let sandbox = Sandbox::start(sandbox_config, sandbox_listener).await?;
        let keys = match self.keys {
            Some(k) => k,
            None => KeyRing::new(EncryptionKey::from_base64(
                &EncryptionKey::generate_base64(),
            )?),
        };
        let mut auth = auth_settings_for(&sandbox, keys);
        for tweak in self.auth {
            tweak(&mut auth);
        }
        let mut sync = SyncConfig {
            bling_api_url: sandbox.base_url(),
            ..SyncConfig::default()
        };
        for tweak in self.sync {
            tweak(&mut sync);
        }
        let mut notify = crate::notify::NotifySettings::default();
        for tweak in self.notify {
            tweak(&mut notify);
        }
        let server = Server::start_with(
            Settings {
                database_url: self.database_url,
                max_connections: self.max_connections,
                tokens: self.tokens,
                auth: Some(auth),
                sync,
            },
            ledger_listener,
            notify,
        )
        .await?;
        Ok(Stack { sandbox, server })
    }
}

/// The connection settings of the sandbox's registered app: its client id and secret, its
/// consent and token endpoints, and the product's renewal defaults.
pub fn auth_settings_for(sandbox: &Sandbox, keys: KeyRing) -> AuthSettings {
    AuthSettings {
        oauth: OAuthSettings {
            client_id: SandboxConfig::DEMO_CLIENT_ID.to_string(),
            client_secret: Secret::new(SandboxConfig::DEMO_CLIENT_SECRET),
            authorize_url: sandbox.authorize_url(),
            token_url: sandbox.token_url(),
            timeout: Duration::from_secs(10),
        },
        keys,
        renewal: RenewalPolicy::default(),
        token_calls_per_minute: 15,
        state_ttl: Duration::from_secs(600),
        renewal_interval: Duration::from_secs(30),
    }
}
