//! Starting and stopping the service: database, migrations, ledger, HTTP API.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::auth::TokenRegistry;
use crate::bling::client::BlingClient;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::oauth::BlingAuth;
use crate::store::{Db, StoreError};
use crate::sync::SyncWorker;

/// Everything `serve` needs, already parsed and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub max_connections: u32,
    pub tokens: TokenRegistry,
    /// The Bling app, when configured.
    pub auth: Option<crate::oauth::AuthSettings>,
    /// The sync worker (runs only with `auth`, and only when `sync.run_worker`).
    pub sync: SyncConfig,
}

/// Where Bling's API is and how the worker uses it.
/// The sealed log's checkpoints: the signing key (none: no checkpoints are signed, the
/// checkpoint endpoints answer 503) and how often `serve` takes one.
#[derive(Debug, Clone, Default)]
pub struct SealSettings {
    pub key: Option<Arc<crate::audit::checkpoint::SigningKey>>,
    /// `None`: only on demand.
    pub checkpoint_interval: Option<std::time::Duration>,
}

impl SealSettings {
    /// The default for a database: on SQLite the key file beside it (created the first time)
    /// and a checkpoint every 10 minutes; on PostgreSQL nothing unless configured.
    pub fn for_database(database_url: &str) -> SealSettings {
        match crate::config::SealArgs::default().signing_key(database_url) {
            Ok(key) => SealSettings {
                checkpoint_interval: key.as_ref().map(|_| std::time::Duration::from_secs(600)),
                key: key.map(Arc::new),
            },
            Err(e) => {
                tracing::warn!(error = %e, "no checkpoint signing key");
                SealSettings::default()
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Run the sync worker in this process (API-only replicas set it false: the API, the
    /// projections and the token renewal still run).
    pub run_worker: bool,
    pub bling_api_url: String,
    pub client: crate::bling::client::ClientConfig,
    pub settings: crate::sync::SyncSettings,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            run_worker: true,
            bling_api_url: "https://api.bling.com.br/Api/v3".into(),
            client: Default::default(),
            settings: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("Bling settings: {0}")]
    Bling(#[from] crate::oauth::endpoint::EndpointConfigError),
    #[error("Bling client: {0}")]
    Client(#[from] crate::bling::client::ClientBuildError),
    #[error("notification client: {0}")]
    Notify(#[from] reqwest::Error),
}

/// A running service. Dropping it does not stop it; call [`Server::stop`].
pub struct Server {
    pub addr: SocketAddr,
    pub db: Db,
    pub ledger: Arc<Ledger>,
    pub auth: Option<Arc<BlingAuth>>,
    /// This process's sync worker: `None` without a Bling app or with `run_worker` false.
    pub sync: Option<Arc<SyncWorker>>,
    /// The read models' runner (support views), always running.
    pub projections: Arc<crate::projections::Projections>,
    /// Outbound notifications and the change feed, always running.
    pub notify: Arc<crate::notify::Notifier>,
    stop: watch::Sender<bool>,
    http: JoinHandle<Result<(), std::io::Error>>,
    background: Vec<JoinHandle<()>>,
}

impl Server {
    /// Connects, migrates and serves on `listener` in the background.
    pub async fn start(settings: Settings, listener: TcpListener) -> Result<Server, ServeError> {
        Self::start_with(settings, listener, crate::notify::NotifySettings::default()).await
    }

    /// [`Server::start`] with the notifier's settings (retry schedule, link lifetime, public
    /// URL) given too.
    pub async fn start_with(
        settings: Settings,
        listener: TcpListener,
        notify_settings: crate::notify::NotifySettings,
    ) -> Result<Server, ServeError> {
        let seal = SealSettings::for_database(&settings.database_url);
        Self::start_full(settings, listener, notify_settings, seal).await
    }

    /// [`Self::start`] with the checkpoint settings given.
    pub async fn start_sealed(
        settings: Settings,
        listener: TcpListener,
        seal: SealSettings,
    ) -> Result<Server, ServeError> {
        Self::start_full(settings, listener, Default::default(), seal).await
    }

    /// [`Self::start`] with the notifier's and the checkpoints' settings given.
    pub async fn start_full(
        settings: Settings,
        listener: TcpListener,
        notify_settings: crate::notify::NotifySettings,
        seal: SealSettings,
    ) -> Result<Server, ServeError> {
        let listener_addr = listener.local_addr()?;
        let db = Db::connect(&settings.database_url, settings.max_connections).await?;
        db.migrate().await?;
        if let Some(auth) = &settings.auth {
            // Customers' personal data is encrypted under keys the master key wraps.
            crate::store::personal::install_master_keys(&db, &auth.keys);
        }
        let ledger = Ledger::new(db.clone());
        let (stop, mut stopped) = watch::channel(false);
        let mut background = Vec::new();
        let auth = match settings.auth {
            Some(auth_settings) => {
                let interval = auth_settings.renewal_interval;
                let auth = Arc::new(BlingAuth::new(
                    db.clone(),
                    Arc::clone(&ledger),
                    auth_settings,
                )?);
                background.push(Arc::clone(&auth.tokens).spawn_renewal(interval, stop.subscribe()));
                Some(auth)
            }
            None => {
                tracing::warn!("no Bling app configured (BLING_CLIENT_ID): ingest only, no sync");
                None
            }
        };
        let metrics = Arc::new(Metrics::default());
        let sync = match &auth {
            Some(_) if !settings.sync.run_worker => {
                tracing::info!("sync worker off in this process (run_worker = false)");
                None
            }
            Some(auth) => {
                let tokens: Arc<dyn crate::bling::AccessTokens> = auth.tokens.clone();
                let observer: Arc<dyn crate::bling::client::CallObserver> = metrics.clone();
                let client = BlingClient::observed(
                    &settings.sync.bling_api_url,
                    tokens,
                    settings.sync.client,
                    observer,
                )?;
                let mut sync_settings = settings.sync.settings.clone();
                // Measured: 32 jobs on a 24-connection pool timed out waiting for a connection
                // (some step of a job holds one connection while it waits for another), and 24
                // jobs on 48 connections ran clean. Keep the jobs in flight to half the pool.
                let most = (settings.max_connections as usize / 2).max(1);
                if sync_settings.max_in_flight > most {
                    tracing::info!(
                        max_in_flight = sync_settings.max_in_flight,
                        max_connections = settings.max_connections,
                        "sync jobs in flight capped at half the connection pool"
                    );
                    sync_settings.max_in_flight = most;
                }
                sync_settings.jobs_per_tenant = sync_settings.jobs_per_tenant.min(most);
                let worker = SyncWorker::with_metrics(
                    db.clone(),
                    Arc::clone(&ledger),
                    client,
                    sync_settings,
                    Arc::clone(&metrics),
                );
                background.push(Arc::clone(&worker).spawn(stop.subscribe()));
                Some(worker)
            }
            None => None,
        };
        let webhooks = crate::webhooks::Webhooks::with_writer(
            auth.as_ref()
                .map(|a| a.settings.oauth.client_secret.expose().to_string()),
            db.clone(),
        );
        if let Some(worker) = &sync {
            let processor = Arc::new(crate::webhooks::Processor {
                db: db.clone(),
                ledger: Arc::clone(&ledger),
                client: worker.client().clone(),
                hooks: Arc::clone(&webhooks),
                poll: settings.sync.settings.poll_interval,
            });
            background.push(processor.spawn(stop.subscribe()));
        }
        let projections = crate::projections::Projections::new(db.clone(), Default::default());
        background.push(Arc::clone(&projections).spawn(stop.subscribe()));
        // Reconnect links are signed with a key derived from the encryption key, so they exist
        // only with a Bling app (and a connection to reconnect).
        let public_url = notify_settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", listener_addr));
        let links = auth.as_ref().map(|a| {
            crate::notify::ReconnectLinks::new(
                a.settings.keys.signing_key(),
                &public_url,
                notify_settings.link_lifetime,
            )
        });
        let notify = crate::notify::Notifier::new(db.clone(), notify_settings, links)?;
        background.extend(Arc::clone(&notify).spawn(stop.subscribe()));
        if let (Some(key), Some(interval)) = (&seal.key, seal.checkpoint_interval) {
            background.push(crate::audit::checkpointer::spawn_periodic(
                db.clone(),
                Arc::clone(key),
                interval,
                stop.subscribe(),
            ));
        }
        let state = AppState {
            signing: seal.key.clone(),
            db: db.clone(),
            ledger: Arc::clone(&ledger),
            tokens: Arc::new(settings.tokens),
            metrics,
            auth: auth.clone(),
            sync: sync.clone(),
            notify: Arc::clone(&notify),
            webhooks,
        };
        let addr = listener.local_addr()?;
        // The peer's address reaches the handlers (refused webhook deliveries are counted by it).
        let app = api::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
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
            auth,
            sync,
            projections,
            notify,
            stop,
            http,
            background,
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
        for task in self.background {
            let _ = task.await;
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
