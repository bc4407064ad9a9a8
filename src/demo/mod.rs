//! `bling-ledger demo`: the whole product in one process, telling its story as it goes.
//!
//! A Bling sandbox, the ledger on an embedded SQLite file, the sync worker and the support
//! console. A demo pet shop connects through the real OAuth flow (consent page, redirect,
//! code exchange), lives through a day of customers and invoices, has its authorization
//! revoked at lunch as a password change would, reconnects through the link its own
//! notification carried, and watches the parked work replay. A small receiver inside the demo
//! plays the pet-shop system's side: it verifies every notification's signature.

mod receiver;
mod script;

use std::net::SocketAddr;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::auth::{Role, TenantScope, TokenRegistry};
use crate::oauth::crypto::{EncryptionKey, KeyRing};
use crate::sandbox::Sandbox;
use crate::server::Server;
use crate::stack::{Stack, StackBuilder};
use crate::store::{events, sync_work, Db, StoreError};
use crate::sync;

pub const TENANT: &str = "petshop-centro";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub sandbox_listen: SocketAddr,
    /// A file the demo owns: it is recreated on every run.
    pub database_path: std::path::PathBuf,
    /// Bling's limit is 3 requests per second per account; the sandbox enforces it.
    pub bling_rate_per_sec: u32,
    /// Draw progress bars (off when the output is not a terminal).
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Server(#[from] crate::server::ServeError),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Story(String),
}

/// What a running demo leaves behind: the services, and the tokens to use them.
pub struct RunningDemo {
    pub server: Server,
    pub sandbox: Sandbox,
    pub support_token: String,
    pub ingest_token: String,
    pub summary: Summary,
    /// The pet-shop system's receiver of notifications.
    pub receiver_url: String,
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub invoices: usize,
    pub synced: usize,
    pub failed: Vec<(String, String, String)>,
    pub parked_and_replayed: usize,
    pub rejected_at_ingest: usize,
    pub bling_calls: usize,
    pub too_many_requests: usize,
    /// Notifications received with a valid signature, by type.
    pub notifications: Vec<(String, usize)>,
    pub reconnected_by_link: bool,
    /// NF-e authorized, of which rejected first then fixed, and left pending (cancelled invoices).
    /// (authorized, rejected then fixed, cancelled invoices whose NF-e was not sent,
    /// cancelled invoices whose NF-e was authorized before the cancellation).
    pub nfe: (usize, usize, usize, usize),
}

fn random_token(prefix: &str) -> String {
    use base64::Engine;
    let bytes: [u8; 24] = rand::random();
    format!(
        "{prefix}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn say(line: impl AsRef<str>) {
    println!("{}", line.as_ref());
}

struct Shop<'a> {
    http: reqwest::Client,
    base: String,
    support: &'a str,
}

impl Shop<'_> {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), DemoError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// The shop's user goes through Bling's consent page, as in a browser.
    async fn connect(&self, sandbox: &Sandbox) -> Result<(), DemoError> {
        let (status, answer) = self
            .send(
                reqwest::Method::POST,
                &format!("/v1/tenants/{TENANT}/connection/authorize"),
                self.support,
                None,
            )
            .await?;
        let url = answer["authorize_url"]
            .as_str()
            .filter(|_| status == 200)
            .ok_or_else(|| DemoError::Story(format!("authorize answered {status}: {answer}")))?;
        self.consent(sandbox, url).await
    }

    /// On Bling's consent page (`url`), the shop's user presses Authorize.
    async fn consent(&self, sandbox: &Sandbox, url: &str) -> Result<(), DemoError> {
        let page = self
            .http
            .get(format!("{url}&account={TENANT}"))
            .send()
            .await?
            .text()
            .await?;
        let field = |name: &str| -> Option<String> {
            let marker = format!("name=\"{name}\" value=\"");
            let start = page.find(&marker)? + marker.len();
            Some(page[start..start + page[start..].find('"')?].to_string())
        };
        let action = page
            .find("action=\"")
            .and_then(|i| {
                page[i + 8..]
                    .find('"')
                    .map(|j| page[i + 8..i + 8 + j].replace("&amp;", "&"))
            })
            .ok_or_else(|| DemoError::Story("Bling's consent page has no form".into()))?;
        let action = if action.starts_with("http") {
            action
        } else {
            format!("http://{}{action}", sandbox.local_addr())
        };
        let mut form = vec![("decision".to_string(), "approve".to_string())];
        for name in ["response_type", "client_id", "state", "account"] {
            form.push((name.to_string(), field(name).unwrap_or_default()));
        }
        let done = self.http.post(action).form(&form).send().await?;
        if !done.status().is_success() {
            return Err(DemoError::Story(format!(
                "the OAuth callback answered {}",
                done.status()
            )));
        }
        Ok(())
    }
}

/// What the story waits for and counts.
enum Tally<'a> {
    /// The tenant's invoices synced.
    Done,
    /// The tenant's invoices no longer pending.
    Settled,
    /// The tenant's invoices parked.
    Parked,
    /// Both changes reached Bling: `SalesOrderUpdated` of the first invoice,
    /// `SituacaoChanged` of the second.
    Reflected {
        updated: &'a str,
        cancelled: &'a str,
    },
}

async fn count(db: &Db, tally: &Tally<'_>) -> Result<i64, StoreError> {
    match tally {
        Tally::Done => sync_work::invoices_in_state(db, Some(TENANT), "done", false).await,
        Tally::Settled => sync_work::invoices_in_state(db, Some(TENANT), "pending", true).await,
        Tally::Parked => sync_work::invoices_in_state(db, Some(TENANT), "parked", false).await,
        Tally::Reflected { updated, cancelled } => {
            let updated = events::count_in_stream(
                db,
                "Invoice",
                &format!("{TENANT}/{updated}"),
                "SalesOrderUpdated",
            )
            .await?;
            let cancelled = events::count_in_stream(
                db,
                "Invoice",
                &format!("{TENANT}/{cancelled}"),
                "SituacaoChanged",
            )
            .await?;
            Ok(updated + cancelled)
        }
    }
}

/// Waits until `tally` reaches `target`, drawing a bar.
async fn wait_for(
    db: &Db,
    label: &str,
    tally: Tally<'_>,
    target: i64,
    progress: bool,
    limit: Duration,
) -> Result<i64, DemoError> {
    let tally = &tally;
    let bar = if progress {
        ProgressBar::new(target.max(0) as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("  {msg:<28} [{bar:30}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let n = count(db, tally).await?;
        bar.set_position(n.max(0) as u64);
        if n >= target || tokio::time::Instant::now() > deadline {
            bar.finish();
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the story and returns the services, still serving.
pub async fn run(options: DemoOptions) -> Result<RunningDemo, DemoError> {
    for suffix in ["", "-wal", "-shm", ".key"] {
        let mut path = options.database_path.clone().into_os_string();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
    let database_url = format!("sqlite://{}", options.database_path.display());
    let support_token = random_token("support");
    let ingest_token = random_token("ingest");
    let admin_token = random_token("admin");
    let tenant =
        aggregates::ids::TenantId::parse(TENANT).map_err(|e| DemoError::Story(e.to_string()))?;
    let tokens = TokenRegistry::default()
        .with_token(
            &ingest_token,
            "petshop-system",
            Role::Ingest,
            TenantScope::One(tenant.clone()),
        )
        .with_token(
            &support_token,
            "support-demo",
            Role::Support,
            TenantScope::One(tenant.clone()),
        )
        .with_token(
            &admin_token,
            "shop-admin",
            Role::Admin,
            TenantScope::One(tenant),
        );
    let key = EncryptionKey::load_or_create_file(&std::path::PathBuf::from(format!(
        "{}.key",
        options.database_path.display()
    )))
    .map_err(|e| DemoError::Story(e.to_string()))?;
    let bling_rate = options.bling_rate_per_sec;
    let Stack { sandbox, server } = StackBuilder::new(&database_url)
        .ledger_listener(tokio::net::TcpListener::bind(options.listen).await?)
        .sandbox_listener(tokio::net::TcpListener::bind(options.sandbox_listen).await?)
        .tokens(tokens)
        .keys(KeyRing::new(key))
        .sandbox(move |s| s.rate_limit_per_sec = bling_rate)
        .sync(move |s| {
            s.settings.generate_nfe = sync::NfeTenants::All;
            s.client.rate_limit_per_sec = bling_rate;
            s.settings.poll_interval = Duration::from_millis(100);
            s.settings.retry_schedule = vec![
                Duration::from_secs(2),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ];
        })
        .start()
        .await
        .map_err(|e| DemoError::Story(e.to_string()))?;
    say(format!(
        "bling-ledger demo: a day at the pet shop \"{TENANT}\""
    ));
    say(format!(
        "  Bling sandbox   {}  ({} req/s, like Bling)",
        sandbox.base_url(),
        options.bling_rate_per_sec
    ));
    say(format!(
        "  ledger          {}  (SQLite: {})",
        server.base_url(),
        options.database_path.display()
    ));
    let shop = Shop {
        http: reqwest::Client::new(),
        base: server.base_url(),
        support: &support_token,
    };
    let mut summary = Summary::default();

    let (receiver, receiver_url) = receiver::Receiver::start().await?;
    let (code, endpoint) = shop
        .send(
            reqwest::Method::POST,
            &format!("/v1/tenants/{TENANT}/endpoints"),
            &admin_token,
            Some(&serde_json::json!({
                "url": receiver_url,
                "event_types": crate::notify::types::NotificationType::names(),
                "description": "the pet-shop system",
            })),
        )
        .await?;
    let secret = endpoint["secret"]
        .as_str()
        .filter(|_| code == 201)
        .ok_or_else(|| {
            DemoError::Story(format!("creating the endpoint answered {code}: {endpoint}"))
        })?;
    receiver
        .set_secret(secret)
        .map_err(|e| DemoError::Story(e.to_string()))?;
    say(format!(
        "  pet-shop system {receiver_url}  (subscribed to every notification; it verifies each signature with the secret {}…, shown once)",
        &secret[..secret.len().min(12)]
    ));

    say("\n1. Connecting the shop to Bling (consent page, Authorize, redirect, code exchange)…");
    // The app's webhooks (Bling's app settings): orders and NF-e, to this ledger.
    sandbox.set_webhook(
        crate::sandbox::SandboxConfig::DEMO_CLIENT_ID,
        Some(crate::sandbox::WebhookSubscription::new(
            format!("{}/webhooks/bling", server.base_url()),
            &["order", "invoice"],
        )),
    );
    sandbox.set_sefaz_rules(
        TENANT,
        crate::sandbox::SefazRules {
            reject_documents: vec![script::BEATRIZ_TYPED_CPF.to_string()],
            deny_documents: Vec::new(),
        },
    );
    shop.connect(&sandbox).await?;
    shop.send(
        reqwest::Method::PUT,
        &format!("/v1/tenants/{TENANT}/nfe-mode"),
        &support_token,
        Some(&serde_json::json!({"mode": "generate_and_send"})),
    )
    .await?;
    let (_, status) = shop
        .send(
            reqwest::Method::GET,
            &format!("/v1/tenants/{TENANT}/connection"),
            &support_token,
            None,
        )
        .await?;
    say(format!(
        "   connected: access token {} expires in {} min; tokens stored encrypted, the log keeps only fingerprints",
        status["token_fingerprint"].as_str().unwrap_or("?"),
        status["expires_in_seconds"].as_i64().unwrap_or(0) / 60
    ));

    say("\n2. Morning: the pet-shop system registers its customers…");
    for c in script::customers() {
        let (code, body) = shop
            .send(
                reqwest::Method::PUT,
                &format!("/v1/tenants/{TENANT}/customers/{}", c.id),
                &ingest_token,
                Some(&c.body),
            )
            .await?;
        let name = c.body["name"].as_str().unwrap_or("");
        match code {
            200 | 201 => say(format!(
                "   {:<8} {:<36} registered{}",
                c.id,
                name,
                c.note.map(|n| format!(" — {n}")).unwrap_or_default()
            )),
            _ => {
                summary.rejected_at_ingest += 1;
                let fields: Vec<String> = body["error"]["fields"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .map(|p| {
                                format!(
                                    "{}: {}",
                                    p["field"].as_str().unwrap_or(""),
                                    p["problem"].as_str().unwrap_or("")
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                say(format!(
                    "   {:<8} {:<36} REFUSED {code} ({}) — {}",
                    c.id,
                    name,
                    fields.join("; "),
                    c.note.unwrap_or("")
                ));
            }
        }
    }

    say("\n   …and bills the morning's baths, grooming, vaccines and food.");
    let morning = script::morning();
    for (id, customer, body) in &morning {
        let (code, answer) = shop
            .send(
                reqwest::Method::POST,
                &format!("/v1/tenants/{TENANT}/invoices/{id}/bill"),
                &ingest_token,
                Some(body),
            )
            .await?;
        if code != 201 {
            return Err(DemoError::Story(format!(
                "billing {id} for {customer} answered {code}: {answer}"
            )));
        }
    }
    summary.invoices += morning.len();
    say("   the worker creates contatos and pedidos in Bling, 3 requests per second:");
    wait_for(
        &server.db,
        "morning invoices settled",
        Tally::Settled,
        morning.len() as i64,
        options.progress,
        Duration::from_secs(300),
    )
    .await?;
    let stuck: Vec<(String, String, String)> =
        sync_work::unsettled_invoices(&server.db, TENANT, true)
            .await?
            .into_iter()
            .map(|(key, customer, error, _)| (key, customer, error.unwrap_or_default()))
            .collect();
    let synced = count(&server.db, &Tally::Done).await?;
    say(format!(
        "   {synced} invoices synced; {} could not be, and the ledger says why:",
        stuck.len()
    ));
    for (invoice, customer, error) in &stuck {
        let (cause, message) = error.split_once(": ").unwrap_or((error.as_str(), ""));
        say(format!("   {invoice} ({customer}): {cause} — {message}"));
        say(format!("      what to do: {}", advice(cause)));
    }

    wait_notifications(&receiver, |t| {
        t.iter()
            .filter(|(k, _)| k == "invoice.synced")
            .map(|(_, n)| *n)
            .sum::<usize>()
            >= synced as usize
    })
    .await;
    say(format!(
        "   the pet-shop system was told, every signature verified: {}",
        tally_text(&receiver.tally())
    ));

    // Later in the morning one customer adds an item; another returns and cancels.
    let (upd_id, upd_customer, _) = &morning[0];
    let updated = script::invoice(
        upd_customer,
        1001,
        &[(0, 1, 0), (2, 1, 0), (7, 1, 0)],
        false,
    );
    shop.send(
        reqwest::Method::PUT,
        &format!("/v1/tenants/{TENANT}/invoices/{upd_id}"),
        &ingest_token,
        Some(&updated),
    )
    .await?;
    let (cancel_id, _, _) = &morning[2];
    shop.send(
        reqwest::Method::POST,
        &format!("/v1/tenants/{TENANT}/invoices/{cancel_id}/cancel"),
        &ingest_token,
        Some(&serde_json::json!({"reason": "cliente desistiu da vacina"})),
    )
    .await?;
    say(format!("   {upd_id}: the customer adds a snack (invoice updated); {cancel_id}: cancelled at the counter"));
    wait_for(
        &server.db,
        "changes reflected in Bling",
        Tally::Reflected {
            updated: upd_id,
            cancelled: cancel_id,
        },
        3,
        options.progress,
        Duration::from_secs(120),
    )
    .await?;
    let pedidos = sandbox.pedidos(TENANT);
    let find = |key: &str| {
        pedidos
            .iter()
            .find(|p| p["numeroLoja"] == key)
            .cloned()
            .unwrap_or_default()
    };
    say(format!(
        "   in Bling: {upd_id}'s order now totals R$ {:.2}; {cancel_id}'s order is in situação {} (Cancelado)",
        find(upd_id)["total"].as_f64().unwrap_or(0.0),
        find(cancel_id)["situacao"]["id"]
    ));

    say("\n3. Lunch: the owner changes the Bling password. Every token of the app is revoked.");
    sandbox.revoke_account(TENANT);
    let afternoon = script::afternoon();
    for (id, _, body) in &afternoon {
        shop.send(
            reqwest::Method::POST,
            &format!("/v1/tenants/{TENANT}/invoices/{id}/bill"),
            &ingest_token,
            Some(body),
        )
        .await?;
    }
    summary.invoices += afternoon.len();
    say(format!("   the afternoon's {} invoices keep coming; the worker finds the authorization revoked and parks them", afternoon.len()));
    wait_for(
        &server.db,
        "afternoon invoices parked",
        Tally::Parked,
        afternoon.len() as i64,
        options.progress,
        Duration::from_secs(120),
    )
    .await?;
    let (_, status) = shop
        .send(
            reqwest::Method::GET,
            &format!("/v1/tenants/{TENANT}/connection"),
            &support_token,
            None,
        )
        .await?;
    say(format!(
        "   connection: {} — Bling answered {} {} to {}; no further call is made for this shop",
        status["state"].as_str().unwrap_or("?"),
        status["revoked"]["status"],
        status["revoked"]["error_type"].as_str().unwrap_or("?"),
        status["revoked"]["call"].as_str().unwrap_or("?"),
    ));
    summary.parked_and_replayed = count(&server.db, &Tally::Parked).await? as usize;

    wait_notifications(&receiver, |t| {
        t.iter().any(|(k, _)| k == "connection.revoked")
    })
    .await;
    let link = receiver
        .taken()
        .into_iter()
        .filter(|t| t.verified && t.payload["type"] == "connection.revoked")
        .find_map(|t| {
            t.payload["data"]["reconnect_url"]
                .as_str()
                .map(str::to_string)
        });
    match &link {
        Some(link) => {
            say("   the pet-shop system is told at once (connection.revoked), with a reconnect link for the owner:");
            say(format!("   {link}"));
            say("\n4. The owner opens the link (no support, no token), continues to Bling and authorizes; parked work replays by itself, in order.");
            let no_redirect = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?;
            let page = no_redirect.get(link).send().await?;
            if !page.status().is_success() {
                return Err(DemoError::Story(format!(
                    "the reconnect link answered {}",
                    page.status()
                )));
            }
            let go = no_redirect.post(link).send().await?;
            let consent = go
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| {
                    DemoError::Story(format!(
                        "the reconnect link's button answered {}",
                        go.status()
                    ))
                })?;
            shop.consent(&sandbox, &consent).await?;
            summary.reconnected_by_link = true;
            let again = no_redirect.get(link).send().await?;
            say(format!(
                "   reconnected; the same link opened again answers {} (used once, nothing stored)",
                again.status()
            ));
        }
        None => {
            say("\n4. Support reconnects the shop (the same OAuth flow); parked work replays by itself, in order.");
            shop.connect(&sandbox).await?;
        }
    }
    // The clerk also fixes the two customer records Bling could not take.
    for id in ["cli-008", "cli-009"] {
        if let Some(fixed) = script::corrected(id) {
            shop.send(
                reqwest::Method::PUT,
                &format!("/v1/tenants/{TENANT}/customers/{id}"),
                &ingest_token,
                Some(&fixed),
            )
            .await?;
        }
    }
    say("   the clerk fixes Fernanda's missing address and Paulo's CEP; their invoices are retried automatically");
    wait_for(
        &server.db,
        "all invoices synced",
        Tally::Done,
        summary.invoices as i64,
        options.progress,
        Duration::from_secs(300),
    )
    .await?;

    summary.synced = count(&server.db, &Tally::Done).await? as usize;
    let failures: Vec<(String, String)> = sync_work::unsettled_invoices(&server.db, TENANT, false)
        .await?
        .into_iter()
        .map(|(key, _, error, state)| (key, error.unwrap_or(state)))
        .collect();
    summary.failed = failures
        .into_iter()
        .map(|(k, e)| (k, e.split(':').next().unwrap_or("").to_string(), e))
        .collect();
    let log = sandbox.call_log();
    summary.bling_calls = log.iter().filter(|c| !c.path.contains("/oauth/")).count();
    summary.too_many_requests = log.iter().filter(|c| c.status == Some(429)).count();
    summary.nfe =
        bling_talks_back(&shop, &server.db, &sandbox, &ingest_token, options.progress).await?;
    // The sync work as the story leaves it: every NF-e settled, so its follow-up has ended
    // (the dispatcher ends it from the settling event; give it a moment to read the last).
    let mut counts = sync::queue::counts(&server.db, Some(TENANT)).await?;
    for _ in 0..40 {
        if !counts
            .iter()
            .any(|(kind, state, _)| kind == "nfe" && state == "pending")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        counts = sync::queue::counts(&server.db, Some(TENANT)).await?;
    }

    say("\nSummary");
    say(format!("   invoices billed        {}", summary.invoices));
    let pedidos = sandbox.pedidos(TENANT).len();
    say(format!(
        "   synced to Bling        {} ({pedidos} pedidos in the Bling account: one per invoice{})",
        summary.synced,
        if pedidos < summary.synced {
            ", none for an invoice cancelled before it was sent"
        } else {
            ""
        }
    ));
    say(format!(
        "   parked, then replayed  {}",
        summary.parked_and_replayed
    ));
    say(format!(
        "   refused at ingest      {} customer record(s), named field by field",
        summary.rejected_at_ingest
    ));
    for (invoice, cause, error) in &summary.failed {
        say(format!(
            "   not synced             {invoice}: {cause} — {error}"
        ));
    }
    say(format!(
        "   NF-e issued            {} ({} rejected by SEFAZ, fixed and authorized){}",
        summary.nfe.0,
        summary.nfe.1,
        match (summary.nfe.2, summary.nfe.3) {
            (0, 0) => String::new(),
            (not_sent, 0) => format!("; {not_sent} of cancelled invoices not sent"),
            (not_sent, stands) => format!(
                "; of cancelled invoices: {not_sent} not sent, {stands} authorized before the \
                 cancellation (for the shop to cancel in Bling within 24 h)"
            ),
        }
    ));
    say(format!(
        "   Bling calls            {} ({} answered 429)",
        summary.bling_calls, summary.too_many_requests
    ));
    wait_notifications(&receiver, |t| {
        t.iter().any(|(k, _)| k == "connection.restored")
    })
    .await;
    summary.notifications = receiver.tally();
    let unverified = receiver.taken().iter().filter(|t| !t.verified).count();
    say(format!(
        "   notifications          {} (signatures verified; {unverified} refused)",
        tally_text(&summary.notifications)
    ));
    say(format!(
        "   reconnected by         {}",
        if summary.reconnected_by_link {
            "the owner, through the link in connection.revoked"
        } else {
            "support"
        }
    ));
    let work: Vec<String> = counts
        .iter()
        .map(|(kind, state, n)| match (kind.as_str(), state.as_str()) {
            // Not work left over: each order is read again for a day (changes made in Bling).
            ("watch", "pending") => format!("watch pending: {n} (orders watched for a day)"),
            _ => format!("{kind} {state}: {n}"),
        })
        .collect();
    say(format!("   sync work              {}", work.join(", ")));
    Ok(RunningDemo {
        server,
        sandbox,
        support_token,
        ingest_token,
        summary,
        receiver_url,
    })
}

/// Waits (up to 20 s) until the receiver's tally satisfies `done`; the notifier runs a moment
/// behind the log.
async fn wait_notifications(
    receiver: &receiver::Receiver,
    done: impl Fn(&[(String, usize)]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done(&receiver.tally()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tally_text(tally: &[(String, usize)]) -> String {
    tally
        .iter()
        .map(|(kind, n)| format!("{kind} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn advice(cause: &str) -> &'static str {
    aggregates::sync::CauseKind::parse(cause)
        .unwrap_or(aggregates::sync::CauseKind::BlingRejected)
        .advice()
}

/// Where to look once the story is told.
pub fn print_where_to_look(demo: &RunningDemo) {
    let base = demo.server.base_url();
    say("\nWhere to look (the demo keeps serving until Ctrl-C)");
    say(format!(
        "   support console   {base}/   (log in with the support token below)"
    ));
    say(format!("   support token     {}", demo.support_token));
    say(format!("   an invoice        curl -H 'Authorization: Bearer {}' {base}/v1/tenants/{TENANT}/invoices/NF-1007/history", demo.support_token));
    say(format!("   the connection    curl -H 'Authorization: Bearer {}' {base}/v1/tenants/{TENANT}/connection", demo.support_token));
    say(format!(
        "   the Bling sandbox {}  (control plane: {})",
        demo.sandbox.base_url(),
        demo.sandbox.control_url()
    ));
    say(format!("   ingest token      {}", demo.ingest_token));
    say(format!("   change feed       curl -H 'Authorization: Bearer {}' '{base}/v1/tenants/{TENANT}/changes?after=0&wait=30'", demo.ingest_token));
    say(format!("   notifications     received by the pet-shop system at {}; deliveries: the console's Notifications panel", demo.receiver_url));
}

/// Step 5: every synced invoice's NF-e sent to SEFAZ and followed (webhooks, polling as the
/// fallback); Beatriz's is rejected for her CPF, the clerk fixes it, support retries.
/// Returns (authorized, rejected then fixed, left pending).
async fn bling_talks_back(
    shop: &Shop<'_>,
    db: &Db,
    sandbox: &Sandbox,
    ingest_token: &str,
    progress: bool,
) -> Result<(usize, usize, usize, usize), DemoError> {
    say("\n5. Bling talks back: each NF-e goes to SEFAZ; Bling's webhooks tell the ledger the answer.");
    let settled = |rows: &[(String, String, i64)]| {
        rows.iter()
            .filter(|(_, s, c)| *c == 0 && !matches!(s.as_str(), "generated" | "sent"))
            .count()
    };
    let open = |rows: &[(String, String, i64)]| rows.iter().filter(|(_, _, c)| *c == 0).count();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let bar = if progress {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    loop {
        let rows = crate::store::webhooks::nfe_statuses(db, TENANT).await?;
        bar.set_length(open(&rows) as u64);
        bar.set_position(settled(&rows) as u64);
        if (!rows.is_empty() && settled(&rows) == open(&rows))
            || tokio::time::Instant::now() > deadline
        {
            bar.finish_and_clear();
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rows = crate::store::webhooks::nfe_statuses(db, TENANT).await?;
    let rejected: Vec<String> = rows
        .iter()
        .filter(|(_, s, _)| s == "rejected")
        .map(|(i, _, _)| i.clone())
        .collect();
    say(format!(
        "   {} NF-e authorized (número, chave de acesso, DANFE link on each invoice); rejected: {}",
        rows.iter().filter(|(_, s, _)| s == "authorized").count(),
        if rejected.is_empty() {
            "none".to_string()
        } else {
            rejected.join(", ")
        }
    ));
    if !rejected.is_empty() {
        say("   SEFAZ: \"Rejeição 237: CPF do destinatário inválido\" — classified nfe_rejected, fix: customer_record");
        say("   the clerk finds Beatriz's CPF typed with two digits swapped and fixes it; the contato follows;");
        shop.send(
            reqwest::Method::PUT,
            &format!("/v1/tenants/{TENANT}/customers/cli-005"),
            ingest_token,
            Some(&script::beatriz_fixed()),
        )
        .await?;
        let fixed_digits: String = script::BEATRIZ_CPF
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            let in_bling = sandbox.contatos(TENANT).iter().any(|c| {
                c["numeroDocumento"].as_str().is_some_and(|d| {
                    d.chars().filter(char::is_ascii_digit).collect::<String>() == fixed_digits
                })
            });
            if in_bling {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        say("   support retries the NF-e (POST …/invoices/{id}/nfe/retry)");
        for invoice in &rejected {
            shop.send(
                reqwest::Method::POST,
                &format!("/v1/tenants/{TENANT}/invoices/{invoice}/nfe/retry"),
                shop.support,
                None,
            )
            .await?;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let rows = crate::store::webhooks::nfe_statuses(db, TENANT).await?;
            let done = rejected
                .iter()
                .all(|r| rows.iter().any(|(i, s, _)| i == r && s == "authorized"));
            if done || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let rows = crate::store::webhooks::nfe_statuses(db, TENANT).await?;
    let authorized = rows.iter().filter(|(_, s, _)| s == "authorized").count();
    let pending = rows
        .iter()
        .filter(|(_, s, c)| *c != 0 && s == "generated")
        .count();
    // A cancelled invoice whose NF-e SEFAZ authorized first (the cancellation came while the
    // send was on the wire, or after): the NF-e stands, and the invoice says so.
    let stands: Vec<&str> = rows
        .iter()
        .filter(|(_, s, c)| *c != 0 && s == "authorized")
        .map(|(i, _, _)| i.as_str())
        .collect();
    say(format!(
        "   NF-e issued for {authorized} invoices{}",
        if rejected.is_empty() {
            String::new()
        } else {
            format!(", {} of them after the fix", rejected.len())
        }
    ));
    if pending > 0 {
        say(format!(
            "   {pending} cancelled invoice(s) had their NF-e generated but not sent: the send checks for a cancellation right before it leaves"
        ));
    }
    for invoice in &stands {
        say(format!(
            "   {invoice} was cancelled after its NF-e left for SEFAZ: the NF-e stands, and the invoice tells support the shop must cancel it in Bling within 24 h"
        ));
    }
    Ok((authorized, rejected.len(), pending, stands.len()))
}
