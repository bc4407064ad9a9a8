//! The in-memory world: accounts (one per shop) with their data, OAuth grants, limits, faults
//! and the call log. Each part has its own mutex, held only for short, await-free sections.

use crate::sandbox::calllog::CallLog;
use crate::sandbox::config::{SandboxConfig, SituacaoIds};
use crate::sandbox::contatos::Contato;
use crate::sandbox::faults::FaultEngine;
use crate::sandbox::formas::FormaPagamento;
use crate::sandbox::limits::Limits;
use crate::sandbox::nfe::Nfe;
use crate::sandbox::oauth::OAuthStore;
use crate::sandbox::pedidos::Pedido;
use crate::sandbox::situacoes::Situacao;
use crate::sandbox::webhooks::WebhookHub;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// One Bling account: a shop's company, with data no other account can see.
pub(crate) struct Account {
    pub name: String,
    pub ids: SituacaoIds,
    /// Sales-order situações: the defaults, then custom ones in creation order.
    pub situacoes: Vec<Situacao>,
    pub contatos: BTreeMap<i64, Contato>,
    pub pedidos: BTreeMap<i64, Pedido>,
    pub nfes: BTreeMap<i64, Nfe>,
    pub last_numero_pedido: i64,
    pub last_numero_nfe: i64,
    /// The shop's own CNPJ, used as the issuer in NF-e access keys.
    pub cnpj: String,
    /// Payment methods (`/formas-pagamentos`), ids unique to this account.
    pub formas: Vec<FormaPagamento>,
    /// The normalized content of the last sale saved (created or updated): Bling refuses an
    /// identical one with code 3.
    pub last_sale: Option<serde_json::Value>,
    /// `GET /empresas/me/dados-basicos` `id` (32 hex).
    pub empresa_id: String,
    /// When the account was created (`dataContrato`).
    pub contratado: chrono::NaiveDateTime,
    /// Seeded SEFAZ answers for this account's NF-e (see `nfe::SefazRules`).
    pub sefaz: crate::sandbox::nfe::SefazRules,
}

/// Resource ids are global, as Bling's are, and start above 2^32 so a client storing them in
/// 32 bits fails here rather than in production.
const FIRST_ID: i64 = 15_000_000_001;
/// Custom situações get large ids unlike the defaults, as real accounts show.
const FIRST_CUSTOM_SITUACAO_ID: i64 = 460_001;

fn new_account(name: &str, ids: SituacaoIds, n: u64) -> Account {
    Account {
        name: name.to_string(),
        ids,
        situacoes: crate::sandbox::situacoes::defaults(&ids),
        contatos: BTreeMap::new(),
        pedidos: BTreeMap::new(),
        nfes: BTreeMap::new(),
        last_numero_pedido: 0,
        last_numero_nfe: 0,
        cnpj: crate::sandbox::nfe::issuer_cnpj(n),
        formas: crate::sandbox::formas::defaults(first_forma_id(n)),
        last_sale: None,
        empresa_id: crate::sandbox::empresa::empresa_id(name),
        contratado: crate::sandbox::validation::now_brt(),
        sefaz: Default::default(),
    }
}

/// Payment-method ids of the n-th account: a block of its own, so no two accounts share one
/// (7-digit ids like the real 1135275 of [VCR]).
fn first_forma_id(n: u64) -> i64 {
    1_100_000 + i64::try_from(n % 800).unwrap_or(0) * 1_000 + 1
}

pub(crate) struct Store {
    pub accounts: BTreeMap<String, Account>,
    pub oauth: OAuthStore,
    default_ids: SituacaoIds,
    last_id: i64,
    last_situacao_id: i64,
}

impl Store {
    pub fn new(config: &SandboxConfig) -> Store {
        let mut store = Store {
            accounts: BTreeMap::new(),
            oauth: OAuthStore::new(config.jwt_only),
            default_ids: config.situacao_ids,
            last_id: FIRST_ID - 1,
            last_situacao_id: FIRST_CUSTOM_SITUACAO_ID - 1,
        };
        for a in &config.accounts {
            let ids = a.situacao_ids.unwrap_or(config.situacao_ids);
            store.create_account(&a.name, ids);
            for nome in &a.custom_situacoes {
                store.add_situacao(&a.name, nome);
            }
        }
        store
    }

    pub fn next_id(&mut self) -> i64 {
        self.last_id += 1;
        self.last_id
    }

    fn create_account(&mut self, name: &str, ids: SituacaoIds) {
        let n = self.accounts.len() as u64 + 1;
        self.accounts
            .entry(name.to_string())
            .or_insert_with(|| new_account(name, ids, n));
    }

    /// The account, created on first use (a shop's first login creates it in the sandbox).
    pub fn account_mut(&mut self, name: &str) -> &mut Account {
        let (ids, n) = (self.default_ids, self.accounts.len() as u64 + 1);
        self.accounts
            .entry(name.to_string())
            .or_insert_with(|| new_account(name, ids, n))
    }

    pub fn add_situacao(&mut self, account: &str, nome: &str) -> i64 {
        let herdado = self.account_mut(account).ids.em_andamento;
        self.add_situacao_herdada(account, nome, herdado)
            .unwrap_or_default()
    }

    /// A custom situação inheriting from `herdado` (and its `valor`); `None` if `herdado` is
    /// not a situação of the account.
    pub fn add_situacao_herdada(&mut self, account: &str, nome: &str, herdado: i64) -> Option<i64> {
        let valor = self
            .account_mut(account)
            .situacoes
            .iter()
            .find(|s| s.id == herdado)?
            .valor;
        self.last_situacao_id += 1;
        let id = self.last_situacao_id;
        self.account_mut(account)
            .situacoes
            .push(Situacao::custom(id, nome, herdado, valor));
        Some(id)
    }
}

pub(crate) struct Shared {
    pub config: SandboxConfig,
    store: Mutex<Store>,
    limits: Mutex<Limits>,
    faults: Mutex<FaultEngine>,
    log: Mutex<CallLog>,
    webhooks: Mutex<WebhookHub>,
    /// Wakes the webhook sender when a delivery is queued.
    pub webhook_wake: std::sync::Arc<tokio::sync::Notify>,
}

impl Shared {
    pub fn new(config: SandboxConfig) -> Shared {
        let mut faults = FaultEngine::new(config.seed, config.faults.clone());
        for a in &config.accounts {
            if let Some(f) = &a.faults {
                faults.set(Some(&a.name), Some(f.clone()));
            }
        }
        Shared {
            store: Mutex::new(Store::new(&config)),
            limits: Mutex::new(Limits::new(
                config.rate_limit_per_sec,
                config.daily_quota,
                config.token_calls_per_minute,
                config.token_block,
                config.ip_blocks,
            )),
            faults: Mutex::new(faults),
            log: Mutex::new(CallLog::default()),
            webhooks: Mutex::new(WebhookHub::new(config.seed)),
            webhook_wake: std::sync::Arc::new(tokio::sync::Notify::new()),
            config,
        }
    }

    // A poisoned mutex means a handler panicked mid-update; the sandbox state can no longer be
    // trusted, so failing loudly is right for a test tool.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .expect("sandbox store mutex poisoned by a panicking handler")
    }

    pub fn limits(&self) -> MutexGuard<'_, Limits> {
        self.limits
            .lock()
            .expect("sandbox limits mutex poisoned by a panicking handler")
    }

    pub fn faults(&self) -> MutexGuard<'_, FaultEngine> {
        self.faults
            .lock()
            .expect("sandbox faults mutex poisoned by a panicking handler")
    }

    pub fn webhooks(&self) -> MutexGuard<'_, WebhookHub> {
        self.webhooks
            .lock()
            .expect("sandbox webhooks mutex poisoned by a panicking handler")
    }

    pub fn log(&self) -> MutexGuard<'_, CallLog> {
        self.log
            .lock()
            .expect("sandbox call-log mutex poisoned by a panicking handler")
    }
}
