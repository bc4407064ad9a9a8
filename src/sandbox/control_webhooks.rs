//! Control-plane operations for webhooks and for what the shop does in Bling's own screen
//! (not part of Bling's API): an app's webhook subscription, its injected faults, its disabled
//! resources and delivery attempts; an order's situação changed or the order deleted by the
//! shop; an NF-e sent, cancelled (within SEFAZ's 24 h window) or denied from the screen. Each screen operation fires the
//! webhook Bling would. Served under `/_sandbox/…` and by the `Sandbox` handle.

use crate::sandbox::nfe;
use crate::sandbox::pedidos::emit_order;
use crate::sandbox::server::Sandbox;
use crate::sandbox::state::Shared;
use crate::sandbox::webhooks::{DeliveryAttempt, WebhookFaults, WebhookSubscription};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

impl Shared {
    fn known_client(&self, client_id: &str) -> bool {
        self.config.clients.iter().any(|c| c.client_id == client_id)
    }

    /// The shop moves an order to `situacao` in Bling's screen; `order.updated` follows.
    /// `Err` names what is wrong.
    pub(crate) fn screen_set_situacao(
        &self,
        account: &str,
        id: i64,
        situacao: i64,
    ) -> Result<(), &'static str> {
        let mut store = self.store();
        let acct = store.account_mut(account);
        if !acct.situacoes.iter().any(|s| s.id == situacao) {
            return Err("no such situação in the account's sales module");
        }
        let p = acct.pedidos.get_mut(&id).ok_or("no such pedido")?;
        p.situacao = situacao;
        p.updated = crate::sandbox::validation::now_brt();
        emit_order(self, &store, account, id, "updated");
        Ok(())
    }

    /// The shop deletes an order in Bling's screen; `order.deleted` follows.
    pub(crate) fn screen_delete_pedido(&self, account: &str, id: i64) -> bool {
        let mut store = self.store();
        if store.account_mut(account).pedidos.remove(&id).is_none() {
            return false;
        }
        self.emit(&store, account, "order", "deleted", json!({"id": id}));
        true
    }
}

impl Sandbox {
    /// Sets (`Some`) or removes the webhook subscription of `client_id`.
    pub fn set_webhook(&self, client_id: &str, sub: Option<WebhookSubscription>) {
        self.shared().set_webhook(client_id, sub);
    }

    /// Faults for `client_id`'s deliveries (restarts its generator).
    pub fn set_webhook_faults(&self, client_id: &str, faults: WebhookFaults) {
        self.shared().set_webhook_faults(client_id, faults);
    }

    /// Every delivery attempt so far (of `client_id`, or all), oldest first.
    pub fn webhook_attempts(&self, client_id: Option<&str>) -> Vec<DeliveryAttempt> {
        self.shared().webhook_attempts(client_id)
    }

    /// Deliveries waiting for an attempt or a retry.
    pub fn webhooks_queued(&self) -> usize {
        self.shared().webhooks_queued()
    }

    /// Resources of the app's webhook disabled after exhausted retries.
    pub fn disabled_webhook_resources(&self, client_id: &str) -> Vec<String> {
        self.shared().disabled_resources(client_id)
    }

    /// Re-enables a disabled resource; false if it was not disabled.
    pub fn enable_webhook_resource(&self, client_id: &str, resource: &str) -> bool {
        self.shared().enable_webhook_resource(client_id, resource)
    }

    /// The shop changes an order's situação in Bling's screen (`order.updated` follows).
    pub fn screen_set_situacao(&self, account: &str, id: i64, situacao: i64) -> Result<(), String> {
        self.shared()
            .screen_set_situacao(account, id, situacao)
            .map_err(str::to_string)
    }

    /// The shop deletes an order in Bling's screen (`order.deleted` follows).
    pub fn screen_delete_pedido(&self, account: &str, id: i64) -> bool {
        self.shared().screen_delete_pedido(account, id)
    }

    /// The shop sends an NF-e to SEFAZ from Bling's screen: `None` without such an NF-e,
    /// `Some(Err(reason))` when SEFAZ rejects it.
    pub fn screen_send_nfe(&self, account: &str, id: i64) -> Option<Result<(), String>> {
        nfe::send_from_screen(self.shared(), account, id)
    }

    /// The shop cancels an authorized NF-e from Bling's screen (`invoice.updated` follows):
    /// `None` without such an NF-e, `Some(Err(reason))` when SEFAZ refuses (not authorized,
    /// or past its 24 h cancellation window: rejeição 501).
    pub fn screen_cancel_nfe(&self, account: &str, id: i64) -> Option<Result<(), String>> {
        nfe::cancel_from_screen(self.shared(), account, id)
    }

    /// Makes NF-e `id`'s authorization `hours` old (SEFAZ's cancellation window counts from
    /// it); false without such an authorized NF-e.
    pub fn age_nfe_authorization(&self, account: &str, id: i64, hours: i64) -> bool {
        nfe::age_authorization(self.shared(), account, id, hours)
    }

    /// Seeded SEFAZ answers for `account`'s NF-e (documents rejected or denied).
    pub fn set_sefaz_rules(&self, account: &str, rules: nfe::SefazRules) {
        self.shared().store().account_mut(account).sefaz = rules;
    }

    /// The NF-e moves to `situacao` (2 cancelled, 9 denied…) as if done in Bling.
    pub fn screen_set_nfe_situacao(&self, account: &str, id: i64, situacao: i64) -> bool {
        nfe::set_situacao(self.shared(), account, id, situacao)
    }
}

fn bad(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

async fn webhook_get(State(s): State<Arc<Shared>>, Path(client_id): Path<String>) -> Response {
    if !s.known_client(&client_id) {
        return bad(StatusCode::NOT_FOUND, "no such client app");
    }
    Json(json!({
        "subscription": s.webhook(&client_id),
        "disabled": s.disabled_resources(&client_id),
        "queued": s.webhooks_queued(),
    }))
    .into_response()
}

async fn webhook_put(
    State(s): State<Arc<Shared>>,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Response {
    if !s.known_client(&client_id) {
        return bad(StatusCode::NOT_FOUND, "no such client app");
    }
    match serde_json::from_slice::<WebhookSubscription>(&body) {
        Ok(sub) => match sub.validate() {
            Ok(()) => {
                s.set_webhook(&client_id, Some(sub));
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => bad(StatusCode::BAD_REQUEST, &e),
        },
        Err(e) => bad(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn webhook_delete(State(s): State<Arc<Shared>>, Path(client_id): Path<String>) -> StatusCode {
    s.set_webhook(&client_id, None);
    StatusCode::NO_CONTENT
}

async fn faults_put(
    State(s): State<Arc<Shared>>,
    Path(client_id): Path<String>,
    body: Bytes,
) -> Response {
    match serde_json::from_slice::<WebhookFaults>(&body) {
        Ok(f) => match f.validate() {
            Ok(()) => {
                s.set_webhook_faults(&client_id, f);
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => bad(StatusCode::BAD_REQUEST, &e),
        },
        Err(e) => bad(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn enable(
    State(s): State<Arc<Shared>>,
    Path((client_id, resource)): Path<(String, String)>,
) -> Response {
    if s.enable_webhook_resource(&client_id, &resource) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        bad(StatusCode::NOT_FOUND, "that resource is not disabled")
    }
}

async fn attempts(
    State(s): State<Arc<Shared>>,
    Path(client_id): Path<String>,
) -> Json<Vec<DeliveryAttempt>> {
    Json(s.webhook_attempts(Some(&client_id)))
}

#[derive(Deserialize)]
struct SituacaoBody {
    id: i64,
}

async fn screen_situacao(
    State(s): State<Arc<Shared>>,
    Path((name, id)): Path<(String, i64)>,
    body: Bytes,
) -> Response {
    match serde_json::from_slice::<SituacaoBody>(&body) {
        Ok(b) => match s.screen_set_situacao(&name, id, b.id) {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => bad(StatusCode::NOT_FOUND, e),
        },
        Err(e) => bad(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn screen_delete(
    State(s): State<Arc<Shared>>,
    Path((name, id)): Path<(String, i64)>,
) -> Response {
    if s.screen_delete_pedido(&name, id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        bad(StatusCode::NOT_FOUND, "no such pedido")
    }
}

async fn screen_send(
    State(s): State<Arc<Shared>>,
    Path((name, id)): Path<(String, i64)>,
) -> Response {
    match nfe::send_from_screen(&s, &name, id) {
        None => bad(StatusCode::NOT_FOUND, "no such NF-e"),
        Some(Ok(())) => Json(json!({"situacao": "autorizada"})).into_response(),
        Some(Err(reason)) => {
            Json(json!({"situacao": "rejeitada", "motivo": reason})).into_response()
        }
    }
}

async fn screen_cancel(
    State(s): State<Arc<Shared>>,
    Path((name, id)): Path<(String, i64)>,
) -> Response {
    match nfe::cancel_from_screen(&s, &name, id) {
        None => bad(StatusCode::NOT_FOUND, "no such NF-e"),
        Some(Ok(())) => Json(json!({"situacao": "cancelada"})).into_response(),
        Some(Err(reason)) => (
            StatusCode::CONFLICT,
            Json(json!({"situacao": "autorizada", "motivo": reason})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct AgeBody {
    hours: i64,
}

async fn age_authorization(
    State(s): State<Arc<Shared>>,
    Path((name, id)): Path<(String, i64)>,
    body: Bytes,
) -> Response {
    match serde_json::from_slice::<AgeBody>(&body) {
        Ok(b) if b.hours >= 0 => {
            if nfe::age_authorization(&s, &name, id, b.hours) {
                StatusCode::NO_CONTENT.into_response()
            } else {
                bad(StatusCode::NOT_FOUND, "no such authorized NF-e")
            }
        }
        Ok(_) => bad(StatusCode::BAD_REQUEST, "hours must be 0 or more"),
        Err(e) => bad(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

#[derive(Deserialize)]
struct NfeSituacaoBody {
    situacao: i64,
}

async fn screen_nfe_situacao(
    State(s): State<Arc<Shared>>,
    Path((name, id)): Path<(String, i64)>,
    body: Bytes,
) -> Response {
    match serde_json::from_slice::<NfeSituacaoBody>(&body) {
        Ok(b) if (1..=11).contains(&b.situacao) => {
            if nfe::set_situacao(&s, &name, id, b.situacao) {
                StatusCode::NO_CONTENT.into_response()
            } else {
                bad(StatusCode::NOT_FOUND, "no such NF-e")
            }
        }
        Ok(_) => bad(StatusCode::BAD_REQUEST, "situacao must be 1 to 11"),
        Err(e) => bad(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn sefaz_put(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    match serde_json::from_slice::<nfe::SefazRules>(&body) {
        Ok(rules) => {
            s.store().account_mut(&name).sefaz = rules;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/accounts/{name}/sefaz", put(sefaz_put))
        .route(
            "/_sandbox/apps/{client_id}/webhook",
            get(webhook_get).put(webhook_put).delete(webhook_delete),
        )
        .route("/_sandbox/apps/{client_id}/webhook/faults", put(faults_put))
        .route(
            "/_sandbox/apps/{client_id}/webhook/{resource}/enable",
            post(enable),
        )
        .route(
            "/_sandbox/apps/{client_id}/webhook/deliveries",
            get(attempts),
        )
        .route(
            "/_sandbox/accounts/{name}/pedidos/{id}/situacao",
            post(screen_situacao),
        )
        .route(
            "/_sandbox/accounts/{name}/pedidos/{id}",
            delete(screen_delete),
        )
        .route(
            "/_sandbox/accounts/{name}/nfes/{id}/enviar",
            post(screen_send),
        )
        .route(
            "/_sandbox/accounts/{name}/nfes/{id}/situacao",
            put(screen_nfe_situacao),
        )
        .route(
            "/_sandbox/accounts/{name}/nfes/{id}/cancelar",
            post(screen_cancel),
        )
        .route(
            "/_sandbox/accounts/{name}/nfes/{id}/authorized-age",
            post(age_authorization),
        )
}
