//! Starting and stopping the service: database, migrations, ledger, HTTP API.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::auth::TokenRegistry;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::store::{Db, StoreError};

/// Everything `serve` needs, already parsed and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub max_connections: u32,
    pub tokens: TokenRegistry,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A running service. Dropping it does not stop it; call [`Server::stop`].
pub struct Server {
    pub addr: SocketAddr,
    pub db: Db,
    pub ledger: Arc<Ledger>,
    stop: watch::Sender<bool>,
    http: JoinHandle<Result<(), std::io::Error>>,
}

impl Server {
    /// Connects, migrates and serves on `listener` in the background.
    pub async fn start(settings: Settings, listener: TcpListener) -> Result<Server, ServeError> {
        let db = Db::connect(&settings.database_url, settings.max_connections).await?;
        db.migrate().await?;
        let ledger = Ledger::new(db.clone());
        let state = AppState {
            db: db.clone(),
            ledger: Arc::clone(&ledger),
            tokens: Arc::new(settings.tokens),
            metrics: Arc::new(Metrics::default()),
        };
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let app = api::router(state);
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
        tracing::info!(%addr, database = db.backend_name(), "bling-ledger serving");
        Ok(Server {
            addr,
            db,
            ledger,
            stop,
            http,
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting requests, lets running ones finish, closes the database.
    pub async fn stop(self) -> Result<(), ServeError> {
        let _ = self.stop.send(true);
        match self.http.await {
            Ok(result) => result?,
            Err(join) => return Err(ServeError::Io(std::io::Error::other(join))),
        }
        self.db.close().await;
        Ok(())
    }

    /// Runs until Ctrl-C or SIGTERM, then stops gracefully.
    pub async fn run_until_signal(self) -> Result<(), ServeError> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
