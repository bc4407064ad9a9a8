//! The invoice: billed by the pet shop, mirrored as a Bling *pedido de venda* whose situação
//! lets the shop issue the NF-e.
//!
//! Commands: bill, update, cancel (from the pet-shop system) and the sync worker's records of
//! what Bling did. Rules:
//! - amounts are integer centavos; each line is `quantity × unit price − discount`, the lines
//!   add up to the total the shop sent, and the installments add up to that total;
//! - an invoice is billed once, only for a customer registered in the same tenant;
//! - a cancelled invoice cannot change; an update that changes nothing appends nothing.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::{CustomerId, InvoiceId, TenantId};
use crate::money::Centavos;
use crate::problems::{text_problem, Problems, TextKind};
use crate::sync::{BlingCall, FailureCause, NfeFix};

/// Answers whether a customer exists; the binary implements it over the event store.
#[async_trait]
pub trait CustomerDirectory: Send + Sync {
    async fn is_registered(&self, tenant: &TenantId, customer: &CustomerId) -> bool;
}

/// The services an invoice needs to decide a command.
#[derive(Clone)]
pub struct InvoiceServices {
    pub customers: Arc<dyn CustomerDirectory>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub sku: String,
    pub description: String,
    pub quantity: u32,
    pub unit_price: Centavos,
    /// Discount on the whole line, not per unit.
    pub discount: Centavos,
}

impl LineItem {
    /// `quantity × unit price − discount`, or `None` when it overflows or goes negative.
    pub fn total(&self) -> Option<Centavos> {
        self.unit_price
            .checked_mul(self.quantity)?
            .checked_sub(self.discount)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installment {
    pub due_date: NaiveDate,
    pub amount: Centavos,
    pub payment_method: String,
}

/// The billable content of an invoice: what an update may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceContent {
    pub number: String,
    pub issue_date: NaiveDate,
    pub items: Vec<LineItem>,
    pub installments: Vec<Installment>,
    pub notes: Option<String>,
    pub total: Centavos,
}

impl InvoiceContent {
    /// Names the fields that differ, in a stable order.
    pub fn changed_fields(&self, newer: &InvoiceContent) -> Vec<String> {
        let pairs = [
            ("number", self.number != newer.number),
            ("issue_date", self.issue_date != newer.issue_date),
            ("items", self.items != newer.items),
            ("installments", self.installments != newer.installments),
            ("notes", self.notes != newer.notes),
            ("total", self.total != newer.total),
        ];
        pairs
            .iter()
            .filter(|(_, differs)| *differs)
            .map(|(name, _)| name.to_string())
            .collect()
    }
}

/// An invoice as the pet-shop system sends it, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceInput {
    pub customer_id: Option<String>,
    pub number: Option<String>,
    pub issue_date: Option<String>,
    #[serde(default)]
    pub items: Vec<LineItemInput>,
    #[serde(default)]
    pub installments: Vec<InstallmentInput>,
    pub notes: Option<String>,
    /// The total the shop computed, in centavos; it must equal the sum of the lines.
    pub total: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineItemInput {
    pub sku: Option<String>,
    pub description: Option<String>,
    pub quantity: Option<i64>,
    pub unit_price: Option<i64>,
    #[serde(default)]
    pub discount: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallmentInput {
    pub due_date: Option<String>,
    pub amount: Option<i64>,
    pub payment_method: Option<String>,
}

/// Most units on one line. Quantities are whole units (grams, for goods sold by weight); a
/// million is a tonne of food, far beyond any pet shop's sale and well inside the NF-e's
/// `qCom` (11 integer digits).
pub const MAX_QUANTITY: i64 = 1_000_000;
/// Most lines on one invoice: the NF-e holds at most 990 items (`det`, `nItem` 1–990).
pub const MAX_ITEMS: usize = 990;
/// Most installments: the NF-e holds at most 120 duplicatas (`dup`).
pub const MAX_INSTALLMENTS: usize = 120;
/// Earliest issue or due date accepted.
pub const EARLIEST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2000, 1, 1) {
    Some(d) => d,
    None => panic!("a valid date"),
};
/// Latest issue or due date accepted.
pub const LATEST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2100, 12, 31) {
    Some(d) => d,
    None => panic!("a valid date"),
};
/// Furthest an installment may fall due after the issue date: SEFAZ refuses a duplicata due
/// more than ten years ahead (rejeição 797).
pub const MAX_YEARS_TO_DUE: u32 = 10;

fn text(
    value: &Option<String>,
    field: &str,
    max: usize,
    problems: &mut Problems,
) -> Option<String> {
    match value.as_deref().map(str::trim) {
        None | Some("") => {
            problems.add(field, "is required");
            None
        }
        Some(v) if v.chars().count() > max => {
            problems.add(field, format!("longer than {max} characters"));
            None
        }
        Some(v) => match text_problem(v, TextKind::SingleLine) {
            Some(problem) => {
                problems.add(field, problem);
                None
            }
            None => Some(v.to_string()),
        },
    }
}

fn date(value: &Option<String>, field: &str, problems: &mut Problems) -> Option<NaiveDate> {
    let raw = text(value, field, 10, problems)?;
    let date = problems.check(
        field,
        NaiveDate::parse_from_str(&raw, "%Y-%m-%d").map_err(|_| "must be a date YYYY-MM-DD"),
    )?;
    if !(EARLIEST_DATE..=LATEST_DATE).contains(&date) {
        problems.add(
            field,
            format!("must be between {EARLIEST_DATE} and {LATEST_DATE}"),
        );
        return None;
    }
    Some(date)
}

fn centavos(value: Option<i64>, field: &str, problems: &mut Problems) -> Option<Centavos> {
    match value {
        None => {
            problems.add(field, "is required (integer centavos)");
            None
        }
        Some(v) if v < 0 => {
            problems.add(field, "must not be negative");
            None
        }
        Some(v) if v as u64 > Centavos::MAX.0 => {
            problems.add(field, too_large());
            None
        }
        Some(v) => Some(Centavos(v as u64)),
    }
}

fn too_large() -> String {
    format!(
        "must be at most {} centavos (R$ 99.999.999,99)",
        Centavos::MAX.0
    )
}

/// A validated bill: the customer and the content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidBill {
    pub customer_id: CustomerId,
    pub content: InvoiceContent,
}

impl InvoiceInput {
    /// Validates every field and every rule on amounts, naming each problem.
    pub fn validate(&self) -> Result<ValidBill, Problems> {
        let mut problems = Problems::new();
        let customer_id = match &self.customer_id {
            None => {
                problems.add("customer_id", "is required");
                None
            }
            Some(raw) => problems.check("customer_id", CustomerId::parse(raw)),
        };
        let number = text(&self.number, "number", 30, &mut problems);
        let issue_date = date(&self.issue_date, "issue_date", &mut problems);
        if self.items.is_empty() {
            problems.add("items", "at least one item is required");
        }
        if self.items.len() > MAX_ITEMS {
            problems.add(
                "items",
                format!("at most {MAX_ITEMS} items (the NF-e's limit)"),
            );
        }
        if self.installments.len() > MAX_INSTALLMENTS {
            problems.add(
                "installments",
                format!("at most {MAX_INSTALLMENTS} installments (the NF-e's limit)"),
            );
        }
        if !problems.is_empty()
            && (self.items.len() > MAX_ITEMS || self.installments.len() > MAX_INSTALLMENTS)
        {
            // Not worth naming each of thousands of lines.
            return Err(problems);
        }
        let mut items = Vec::with_capacity(self.items.len());
        for (i, item) in self.items.iter().enumerate() {
            let at = |name: &str| format!("items[{i}].{name}");
            let sku = text(&item.sku, &at("sku"), 60, &mut problems);
            let description = text(&item.description, &at("description"), 120, &mut problems);
            let quantity = match item.quantity {
                Some(q) if q > 0 && q <= MAX_QUANTITY => Some(q as u32),
                Some(q) if q > MAX_QUANTITY => {
                    problems.add(at("quantity"), format!("must be at most {MAX_QUANTITY}"));
                    None
                }
                Some(_) => {
                    problems.add(at("quantity"), "must be a positive whole number");
                    None
                }
                None => {
                    problems.add(at("quantity"), "is required");
                    None
                }
            };
            let unit_price = centavos(item.unit_price, &at("unit_price"), &mut problems);
            let discount = centavos(Some(item.discount), &at("discount"), &mut problems);
            if let (
                Some(sku),
                Some(description),
                Some(quantity),
                Some(unit_price),
                Some(discount),
            ) = (sku, description, quantity, unit_price, discount)
            {
                let line = LineItem {
                    sku,
                    description,
                    quantity,
                    unit_price,
                    discount,
                };
                match line.total() {
                    None => problems.add(at("discount"), "is larger than quantity × unit_price"),
                    Some(total) if total > Centavos::MAX => problems.add(
                        format!("items[{i}]"),
                        format!("quantity × unit_price − discount {}", too_large()),
                    ),
                    Some(_) => {}
                }
                items.push(line);
            }
        }
        if self.installments.is_empty() {
            problems.add("installments", "at least one installment is required");
        }
        let mut installments = Vec::with_capacity(self.installments.len());
        for (i, inst) in self.installments.iter().enumerate() {
            let at = |name: &str| format!("installments[{i}].{name}");
            let due_date = date(&inst.due_date, &at("due_date"), &mut problems);
            let amount = centavos(inst.amount, &at("amount"), &mut problems);
            let payment_method = text(
                &inst.payment_method,
                &at("payment_method"),
                60,
                &mut problems,
            );
            if let (Some(due_date), Some(amount), Some(payment_method)) =
                (due_date, amount, payment_method)
            {
                installments.push(Installment {
                    due_date,
                    amount,
                    payment_method,
                });
            }
        }
        if let Some(issue) = issue_date {
            let latest_due = issue
                .checked_add_months(chrono::Months::new(12 * MAX_YEARS_TO_DUE))
                .unwrap_or(LATEST_DATE);
            let mut previous: Option<NaiveDate> = None;
            for (i, inst) in self.installments.iter().enumerate() {
                let Some(Ok(due)) = inst
                    .due_date
                    .as_deref()
                    .map(|d| NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d"))
                else {
                    continue;
                };
                let field = format!("installments[{i}].due_date");
                if !(EARLIEST_DATE..=LATEST_DATE).contains(&due) {
                    // Already named by `date`.
                } else if due < issue {
                    // SEFAZ refuses a duplicata due before the NF-e (rejeição 898).
                    problems.add(field, "must not be before issue_date");
                } else if due > latest_due {
                    problems.add(
                        field,
                        format!("must be at most {MAX_YEARS_TO_DUE} years after issue_date"),
                    );
                } else if previous.is_some_and(|p| due < p) {
                    // SEFAZ wants the duplicatas in order of due date (rejeição 850).
                    problems.add(
                        field,
                        "must not be before the previous installment's due_date",
                    );
                }
                previous = Some(due);
            }
        }
        let notes = self
            .notes
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        if notes.as_ref().is_some_and(|n| n.chars().count() > 2000) {
            problems.add("notes", "longer than 2000 characters");
        } else if let Some(problem) = notes
            .as_deref()
            .and_then(|n| text_problem(n, TextKind::MultiLine))
        {
            problems.add("notes", problem);
        }
        let total = centavos(self.total, "total", &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        let lines_total: Option<Centavos> = items
            .iter()
            .try_fold(Centavos::ZERO, |acc, item| acc.checked_add(item.total()?));
        let installments_total: Option<Centavos> = installments
            .iter()
            .try_fold(Centavos::ZERO, |acc, inst| acc.checked_add(inst.amount));
        let (Some(customer_id), Some(number), Some(issue_date), Some(total)) =
            (customer_id, number, issue_date, total)
        else {
            return Err(problems);
        };
        match lines_total {
            Some(sum) if sum > Centavos::MAX => problems.add(
                "items",
                format!("add up to more than the cap: {}", too_large()),
            ),
            Some(sum) if sum == total => {}
            Some(sum) => problems.add(
                "total",
                format!("is {} but the items add up to {}", total.0, sum.0),
            ),
            None => problems.add("items", "amounts overflow"),
        }
        match installments_total {
            Some(sum) if sum == total => {}
            Some(sum) => problems.add(
                "installments",
                format!("add up to {} but the total is {}", sum.0, total.0),
            ),
            None => problems.add("installments", "amounts overflow"),
        }
        problems.into_result()?;
        Ok(ValidBill {
            customer_id,
            content: InvoiceContent {
                number,
                issue_date,
                items,
                installments,
                notes,
                total,
            },
        })
    }
}

/// Where the ledger learned an NF-e's or an order's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A Bling webhook (then confirmed with a `GET`).
    Webhook,
    /// The follow-up poll of `GET /nfe/{id}` or `GET /pedidos/vendas/{id}`.
    Poll,
    /// The answer to our own `POST /nfe/{id}/enviar`.
    Send,
}

/// The NF-e of an invoice, as far as the ledger knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NfeStatus {
    /// Generated in Bling, not sent to SEFAZ.
    Generated,
    /// Sent to SEFAZ, no answer yet.
    Sent,
    Authorized,
    Rejected,
    Denied,
    Cancelled,
}

impl NfeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NfeStatus::Generated => "generated",
            NfeStatus::Sent => "sent",
            NfeStatus::Authorized => "authorized",
            NfeStatus::Rejected => "rejected",
            NfeStatus::Denied => "denied",
            NfeStatus::Cancelled => "cancelled",
        }
    }

    /// Whether SEFAZ's answer is in (nothing more comes without a person: a rejection waits
    /// for a fix and a retry; an authorized NF-e can still be cancelled in Bling).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            NfeStatus::Authorized | NfeStatus::Rejected | NfeStatus::Denied | NfeStatus::Cancelled
        )
    }
}

/// The authorized NF-e's identity: what a customer or an auditor asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NfeDocument {
    pub numero: String,
    pub serie: i64,
    /// 44 digits.
    pub chave_acesso: String,
    pub link_danfe: String,
    pub link_pdf: String,
}

/// What Bling's `GET /nfe/{id}` showed, as a command records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum NfeObserved {
    Authorized { document: NfeDocument },
    Rejected { reason: String },
    Denied { reason: String },
    Cancelled,
}

/// The part of a Bling order the ledger sets, to compare with what Bling has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFacts {
    /// `None`: the order no longer exists in Bling.
    pub situacao_id: Option<i64>,
    /// Total in centavos.
    pub total: Option<i64>,
}

/// An order changed in Bling by someone other than the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    pub bling_order_id: i64,
    pub expected: OrderFacts,
    pub found: OrderFacts,
    /// Who changed it, as far as can be told ("the shop in Bling": Bling does not say who).
    pub changed_by: String,
    pub source: Source,
}

/// Support's choice on a divergence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceChoice {
    /// Make Bling match the ledger again (recreate a deleted order).
    PushOurs,
    /// Keep what Bling has; the ledger stops pushing its situação.
    AcceptBling,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InvoiceCommand {
    Bill {
        tenant: TenantId,
        invoice_id: InvoiceId,
        customer_id: CustomerId,
        content: InvoiceContent,
    },
    /// Replace the content; the customer of an invoice never changes.
    Update {
        tenant: TenantId,
        customer_id: CustomerId,
        content: InvoiceContent,
    },
    Cancel {
        tenant: TenantId,
        reason: Option<String>,
    },
    RecordOrderCreated {
        bling_order_id: i64,
        bling_number: Option<i64>,
        /// `false` when an order carrying our key was found and adopted instead.
        created: bool,
        content_version: u64,
        calls: Vec<BlingCall>,
    },
    RecordOrderUpdated {
        content_version: u64,
        calls: Vec<BlingCall>,
    },
    RecordSituacaoChanged {
        situacao_id: i64,
        situacao_name: String,
        calls: Vec<BlingCall>,
    },
    RecordNfeGenerated {
        nfe_id: i64,
        calls: Vec<BlingCall>,
    },
    RecordSyncFailed {
        cause: FailureCause,
        attempt: u32,
        /// When the worker will try again by itself; `None` when it waits for a person.
        retry_at: Option<chrono::DateTime<chrono::Utc>>,
        calls: Vec<BlingCall>,
    },
    /// Work stopped without a Bling call: the connection is revoked or disconnected.
    RecordSyncParked {
        reason: String,
    },
    /// Parked or failed work was taken up again (reconnection, customer fixed, support).
    RecordSyncResumed {
        reason: String,
    },
    /// `POST /nfe/{id}/enviar` was answered (the NF-e went to SEFAZ).
    RecordNfeSent {
        nfe_id: i64,
        calls: Vec<BlingCall>,
    },
    /// Bling shows the NF-e in a state SEFAZ decided. Recording a state already recorded
    /// appends nothing, so duplicate and late deliveries leave one outcome.
    RecordNfeState {
        nfe_id: i64,
        observed: NfeObserved,
        source: Source,
        calls: Vec<BlingCall>,
    },
    /// Support (or the API) asks for a rejected NF-e to be sent again after a fix.
    RetryNfe {
        by: String,
    },
    /// Bling's order differs from what the ledger set. An open divergence with the same
    /// findings appends nothing.
    RecordDivergence {
        divergence: Divergence,
        calls: Vec<BlingCall>,
    },
    ResolveDivergence {
        choice: DivergenceChoice,
        by: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NfeCommandError {
    #[error("the invoice has no NF-e")]
    NoNfe,
    #[error("the NF-e is not rejected (it is {0}): nothing to retry")]
    NotRejected(&'static str),
    #[error("the invoice has no open divergence")]
    NoDivergence,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum InvoiceEvent {
    InvoiceBilled {
        tenant: TenantId,
        invoice_id: InvoiceId,
        customer_id: CustomerId,
        content: InvoiceContent,
    },
    InvoiceUpdated {
        changed_fields: Vec<String>,
        content: InvoiceContent,
    },
    InvoiceCancelled {
        reason: Option<String>,
    },
    SalesOrderCreated {
        bling_order_id: i64,
        bling_number: Option<i64>,
        created: bool,
        content_version: u64,
        #[serde(default)]
        calls: Vec<BlingCall>,
    },
    SalesOrderUpdated {
        content_version: u64,
        #[serde(default)]
        calls: Vec<BlingCall>,
    },
    SituacaoChanged {
        situacao_id: i64,
        situacao_name: String,
        #[serde(default)]
        calls: Vec<BlingCall>,
    },
    NfeGenerated {
        nfe_id: i64,
        #[serde(default)]
        calls: Vec<BlingCall>,
    },
    SyncFailed {
        cause: FailureCause,
        attempt: u32,
        retry_at: Option<chrono::DateTime<chrono::Utc>>,
        #[serde(default)]
        calls: Vec<BlingCall>,
    },
    SyncParked {
        reason: String,
    },
    SyncResumed {
        reason: String,
    },
    NfeSent {
        nfe_id: i64,
        #[serde(default)]
        calls: Vec<BlingCall>,
    },
    NfeAuthorized {
        nfe_id: i64,
        document: NfeDocument,
        source: Source,
        #[serde(default)]
        calls: Vec<BlingCall>,
    },
    NfeDenied {
        nfe_id: i64,
        reason: String,
        source: Source,
        #[serde(default)]
        calls: Vec<BlingCall>,
    },
    NfeCancelled {
        nfe_id: i64,
        source: Source,
        #[serde(default)]
        calls: Vec<BlingCall>,
    },
    NfeRetryRequested {
        nfe_id: i64,
        by: String,
    },
    OrderDiverged {
        divergence: Divergence,
        #[serde(default)]
        calls: Vec<BlingCall>,
    },
    DivergenceResolved {
        choice: DivergenceChoice,
        by: String,
        divergence: Divergence,
    },
}

impl DomainEvent for InvoiceEvent {
    fn event_type(&self) -> String {
        match self {
            InvoiceEvent::InvoiceBilled { .. } => "InvoiceBilled",
            InvoiceEvent::InvoiceUpdated { .. } => "InvoiceUpdated",
            InvoiceEvent::InvoiceCancelled { .. } => "InvoiceCancelled",
            InvoiceEvent::SalesOrderCreated { .. } => "SalesOrderCreated",
            InvoiceEvent::SalesOrderUpdated { .. } => "SalesOrderUpdated",
            InvoiceEvent::SituacaoChanged { .. } => "SituacaoChanged",
            InvoiceEvent::NfeGenerated { .. } => "NfeGenerated",
            InvoiceEvent::SyncFailed { .. } => "SyncFailed",
            InvoiceEvent::SyncParked { .. } => "SyncParked",
            InvoiceEvent::SyncResumed { .. } => "SyncResumed",
            InvoiceEvent::NfeSent { .. } => "NfeSent",
            InvoiceEvent::NfeAuthorized { .. } => "NfeAuthorized",
            InvoiceEvent::NfeDenied { .. } => "NfeDenied",
            InvoiceEvent::NfeCancelled { .. } => "NfeCancelled",
            InvoiceEvent::NfeRetryRequested { .. } => "NfeRetryRequested",
            InvoiceEvent::OrderDiverged { .. } => "OrderDiverged",
            InvoiceEvent::DivergenceResolved { .. } => "DivergenceResolved",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    #[error("the invoice is already billed")]
    AlreadyBilled,
    #[error("the invoice has not been billed")]
    NotBilled,
    #[error("the invoice is cancelled and cannot change")]
    Cancelled,
    #[error("customer {0} is not registered in this tenant, or was erased (LGPD)")]
    UnknownCustomer(String),
    #[error("the customer of an invoice cannot change (billed for {0})")]
    CustomerChanged(String),
    #[error("invoice belongs to tenant {0}")]
    WrongTenant(String),
    #[error(transparent)]
    Nfe(#[from] NfeCommandError),
}

/// The invoice's state, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    pub tenant: Option<TenantId>,
    pub invoice_id: Option<InvoiceId>,
    pub customer_id: Option<CustomerId>,
    pub content: Option<InvoiceContent>,
    /// Counts billing and updates: the worker says which version it wrote to Bling.
    pub content_version: u64,
    pub cancelled: bool,
    pub bling_order_id: Option<i64>,
    pub synced_version: Option<u64>,
    pub situacao_id: Option<i64>,
    pub nfe_id: Option<i64>,
    pub failed_attempts: u32,
    /// Waiting for a reconnection; no Bling call is made meanwhile.
    pub parked: bool,
    #[serde(default)]
    pub nfe_status: Option<NfeStatus>,
    #[serde(default)]
    pub nfe_document: Option<NfeDocument>,
    /// An order changed in Bling, until support resolves it.
    #[serde(default)]
    pub divergence: Option<Divergence>,
    /// Support accepted Bling's situação: the worker no longer pushes its own.
    #[serde(default)]
    pub accepted_bling_situacao: bool,
    /// The ledger sent this NF-e to SEFAZ itself (the shop's mode was generate-and-send).
    #[serde(default)]
    pub nfe_sent_by_ledger: bool,
    /// A retry was asked and the ledger's own send of it has not happened yet: until it has,
    /// a refusal seen by a webhook or a poll is SEFAZ's earlier answer (see `nfe_transition`).
    #[serde(default)]
    pub nfe_resend_due: bool,
}

impl Invoice {
    pub fn is_billed(&self) -> bool {
        self.content.is_some()
    }

    fn check_tenant(&self, tenant: &TenantId) -> Result<(), InvoiceError> {
        match &self.tenant {
            Some(owner) if owner != tenant => Err(InvoiceError::WrongTenant(owner.to_string())),
            _ => Ok(()),
        }
    }

    /// The event for an observed NF-e state, or `None` when it is already the known one.
    fn nfe_transition(
        &self,
        nfe_id: i64,
        observed: NfeObserved,
        source: Source,
        calls: Vec<BlingCall>,
    ) -> Option<InvoiceEvent> {
        let status = match &observed {
            NfeObserved::Authorized { .. } => NfeStatus::Authorized,
            NfeObserved::Rejected { .. } => NfeStatus::Rejected,
            NfeObserved::Denied { .. } => NfeStatus::Denied,
            NfeObserved::Cancelled => NfeStatus::Cancelled,
        };
        if self.nfe_status == Some(status) {
            return None;
        }
        // After a retry of an NF-e the ledger sends, Bling shows the old refusal until the
        // ledger's send: a webhook or a poll (one already under way when the retry was asked)
        // reading it then would record it again, ending the retry's follow-up before its send.
        if self.nfe_resend_due
            && source != Source::Send
            && matches!(
                observed,
                NfeObserved::Rejected { .. } | NfeObserved::Denied { .. }
            )
        {
            return None;
        }
        Some(match observed {
            NfeObserved::Authorized { document } => InvoiceEvent::NfeAuthorized {
                nfe_id,
                document,
                source,
                calls,
            },
            NfeObserved::Rejected { reason } => InvoiceEvent::SyncFailed {
                cause: FailureCause::NfeRejected {
                    nfe_id,
                    fix: NfeFix::classify(&reason),
                    reason,
                },
                attempt: self.failed_attempts + 1,
                retry_at: None,
                calls,
            },
            NfeObserved::Denied { reason } => InvoiceEvent::NfeDenied {
                nfe_id,
                reason,
                source,
                calls,
            },
            NfeObserved::Cancelled => InvoiceEvent::NfeCancelled {
                nfe_id,
                source,
                calls,
            },
        })
    }

    fn require_billed(&self) -> Result<(), InvoiceError> {
        if self.is_billed() {
            Ok(())
        } else {
            Err(InvoiceError::NotBilled)
        }
    }
}

impl Aggregate for Invoice {
    const TYPE: &'static str = "Invoice";
    type Command = InvoiceCommand;
    type Event = InvoiceEvent;
    type Error = InvoiceError;
    type Services = InvoiceServices;

    async fn handle(
        &mut self,
        command: InvoiceCommand,
        services: &InvoiceServices,
        sink: &EventSink<Self>,
    ) -> Result<(), InvoiceError> {
        match command {
            InvoiceCommand::Bill {
                tenant,
                invoice_id,
                customer_id,
                content,
            } => {
                self.check_tenant(&tenant)?;
                if self.is_billed() {
                    return Err(InvoiceError::AlreadyBilled);
                }
                if !services
                    .customers
                    .is_registered(&tenant, &customer_id)
                    .await
                {
                    return Err(InvoiceError::UnknownCustomer(customer_id.to_string()));
                }
                let event = InvoiceEvent::InvoiceBilled {
                    tenant,
                    invoice_id,
                    customer_id,
                    content,
                };
                sink.write(event, self).await;
            }
            InvoiceCommand::Update {
                tenant,
                customer_id,
                content,
            } => {
                self.check_tenant(&tenant)?;
                let current = self.content.as_ref().ok_or(InvoiceError::NotBilled)?;
                if self.cancelled {
                    return Err(InvoiceError::Cancelled);
                }
                if let Some(billed_for) = &self.customer_id {
                    if *billed_for != customer_id {
                        return Err(InvoiceError::CustomerChanged(billed_for.to_string()));
                    }
                }
                let changed_fields = current.changed_fields(&content);
                if !changed_fields.is_empty() {
                    let event = InvoiceEvent::InvoiceUpdated {
                        changed_fields,
                        content,
                    };
                    sink.write(event, self).await;
                }
            }
            InvoiceCommand::Cancel { tenant, reason } => {
                self.check_tenant(&tenant)?;
                self.require_billed()?;
                if self.cancelled {
                    return Err(InvoiceError::Cancelled);
                }
                sink.write(InvoiceEvent::InvoiceCancelled { reason }, self)
                    .await;
            }
            InvoiceCommand::RecordOrderCreated {
                bling_order_id,
                bling_number,
                created,
                content_version,
                calls,
            } => {
                self.require_billed()?;
                let event = InvoiceEvent::SalesOrderCreated {
                    bling_order_id,
                    bling_number,
                    created,
                    content_version,
                    calls,
                };
                sink.write(event, self).await;
            }
            InvoiceCommand::RecordOrderUpdated {
                content_version,
                calls,
            } => {
                self.require_billed()?;
                let event = InvoiceEvent::SalesOrderUpdated {
                    content_version,
                    calls,
                };
                sink.write(event, self).await;
            }
            InvoiceCommand::RecordSituacaoChanged {
                situacao_id,
                situacao_name,
                calls,
            } => {
                self.require_billed()?;
                let event = InvoiceEvent::SituacaoChanged {
                    situacao_id,
                    situacao_name,
                    calls,
                };
                sink.write(event, self).await;
            }
            InvoiceCommand::RecordNfeGenerated { nfe_id, calls } => {
                self.require_billed()?;
                sink.write(InvoiceEvent::NfeGenerated { nfe_id, calls }, self)
                    .await;
            }
            InvoiceCommand::RecordSyncFailed {
                cause,
                attempt,
                retry_at,
                calls,
            } => {
                self.require_billed()?;
                let event = InvoiceEvent::SyncFailed {
                    cause,
                    attempt,
                    retry_at,
                    calls,
                };
                sink.write(event, self).await;
            }
            InvoiceCommand::RecordSyncParked { reason } => {
                self.require_billed()?;
                // Parked once is enough: a tenant's whole backlog may be told again and again.
                if !self.parked {
                    sink.write(InvoiceEvent::SyncParked { reason }, self).await;
                }
            }
            InvoiceCommand::RecordSyncResumed { reason } => {
                self.require_billed()?;
                sink.write(InvoiceEvent::SyncResumed { reason }, self).await;
            }
            InvoiceCommand::RecordNfeSent { nfe_id, calls } => {
                self.require_billed()?;
                sink.write(InvoiceEvent::NfeSent { nfe_id, calls }, self)
                    .await;
            }
            InvoiceCommand::RecordNfeState {
                nfe_id,
                observed,
                source,
                calls,
            } => {
                self.require_billed()?;
                if let Some(event) = self.nfe_transition(nfe_id, observed, source, calls) {
                    sink.write(event, self).await;
                }
            }
            InvoiceCommand::RetryNfe { by } => {
                self.require_billed()?;
                let nfe_id = self.nfe_id.ok_or(NfeCommandError::NoNfe)?;
                match self.nfe_status {
                    Some(NfeStatus::Rejected) => {}
                    other => {
                        return Err(NfeCommandError::NotRejected(
                            other.map_or("not followed", NfeStatus::as_str),
                        )
                        .into())
                    }
                }
                sink.write(InvoiceEvent::NfeRetryRequested { nfe_id, by }, self)
                    .await;
            }
            InvoiceCommand::RecordDivergence { divergence, calls } => {
                self.require_billed()?;
                let same = self.divergence.as_ref().is_some_and(|d| {
                    d.found == divergence.found && d.bling_order_id == divergence.bling_order_id
                });
                if !same {
                    sink.write(InvoiceEvent::OrderDiverged { divergence, calls }, self)
                        .await;
                }
            }
            InvoiceCommand::ResolveDivergence { choice, by } => {
                self.require_billed()?;
                let divergence = self
                    .divergence
                    .clone()
                    .ok_or(NfeCommandError::NoDivergence)?;
                sink.write(
                    InvoiceEvent::DivergenceResolved {
                        choice,
                        by,
                        divergence,
                    },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: InvoiceEvent) {
        match event {
            InvoiceEvent::InvoiceBilled {
                tenant,
                invoice_id,
                customer_id,
                content,
            } => {
                self.tenant = Some(tenant);
                self.invoice_id = Some(invoice_id);
                self.customer_id = Some(customer_id);
                self.content = Some(content);
                self.content_version = 1;
            }
            InvoiceEvent::InvoiceUpdated { content, .. } => {
                self.content = Some(content);
                self.content_version += 1;
            }
            InvoiceEvent::InvoiceCancelled { .. } => self.cancelled = true,
            InvoiceEvent::SalesOrderCreated {
                bling_order_id,
                content_version,
                created,
                ..
            } => {
                self.bling_order_id = Some(bling_order_id);
                // An adopted order (found by our key after a lost answer) holds content we have
                // not seen: it is synced only once read back or updated (`SalesOrderUpdated`),
                // as the invoice projection counts it.
                self.synced_version = created.then_some(content_version);
                self.failed_attempts = 0;
                self.parked = false;
            }
            InvoiceEvent::SalesOrderUpdated {
                content_version, ..
            } => {
                self.synced_version = Some(content_version);
                self.failed_attempts = 0;
            }
            InvoiceEvent::SituacaoChanged { situacao_id, .. } => {
                self.situacao_id = Some(situacao_id);
                self.parked = false;
            }
            InvoiceEvent::NfeGenerated { nfe_id, .. } => {
                self.nfe_id = Some(nfe_id);
                self.nfe_status = Some(NfeStatus::Generated);
            }
            InvoiceEvent::SyncFailed { attempt, cause, .. } => {
                if let FailureCause::NfeRejected { .. } = cause {
                    self.nfe_status = Some(NfeStatus::Rejected);
                } else {
                    self.failed_attempts = attempt;
                }
            }
            InvoiceEvent::NfeSent { .. } => {
                self.nfe_status = Some(NfeStatus::Sent);
                self.nfe_sent_by_ledger = true;
                self.nfe_resend_due = false;
            }
            InvoiceEvent::NfeAuthorized { document, .. } => {
                self.nfe_status = Some(NfeStatus::Authorized);
                self.nfe_document = Some(document);
            }
            InvoiceEvent::NfeDenied { .. } => self.nfe_status = Some(NfeStatus::Denied),
            InvoiceEvent::NfeCancelled { .. } => self.nfe_status = Some(NfeStatus::Cancelled),
            InvoiceEvent::NfeRetryRequested { .. } => {
                self.nfe_status = Some(NfeStatus::Generated);
                self.nfe_resend_due = self.nfe_sent_by_ledger;
            }
            InvoiceEvent::OrderDiverged { divergence, .. } => self.divergence = Some(divergence),
            InvoiceEvent::DivergenceResolved {
                choice, divergence, ..
            } => {
                self.divergence = None;
                match choice {
                    DivergenceChoice::PushOurs => {
                        // The worker sets its situação again; a deleted order is created anew.
                        self.situacao_id = None;
                        self.accepted_bling_situacao = false;
                        if divergence.found.situacao_id.is_none() {
                            self.bling_order_id = None;
                            self.synced_version = None;
                            self.nfe_id = None;
                            self.nfe_status = None;
                        }
                    }
                    DivergenceChoice::AcceptBling => {
                        self.accepted_bling_situacao = true;
                        self.situacao_id = divergence.found.situacao_id;
                    }
                }
            }
            InvoiceEvent::SyncParked { .. } => self.parked = true,
            InvoiceEvent::SyncResumed { .. } => self.parked = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    struct Directory(bool);

    #[async_trait]
    impl CustomerDirectory for Directory {
        async fn is_registered(&self, _tenant: &TenantId, _customer: &CustomerId) -> bool {
            self.0
        }
    }

    fn services(customer_exists: bool) -> InvoiceServices {
        InvoiceServices {
            customers: Arc::new(Directory(customer_exists)),
        }
    }

    fn input() -> InvoiceInput {
        InvoiceInput {
            customer_id: Some("c1".into()),
            number: Some("NF-1001".into()),
            issue_date: Some("2026-11-25".into()),
            items: vec![
                LineItemInput {
                    sku: Some("BANHO-P".into()),
                    description: Some("Banho porte pequeno".into()),
                    quantity: Some(2),
                    unit_price: Some(4500),
                    discount: 1000,
                },
                LineItemInput {
                    sku: Some("V10".into()),
                    description: Some("Vacina V10".into()),
                    quantity: Some(1),
                    unit_price: Some(9000),
                    discount: 0,
                },
            ],
            installments: vec![
                InstallmentInput {
                    due_date: Some("2026-11-25".into()),
                    amount: Some(8000),
                    payment_method: Some("pix".into()),
                },
                InstallmentInput {
                    due_date: Some("2026-12-25".into()),
                    amount: Some(9000),
                    payment_method: Some("cartao".into()),
                },
            ],
            notes: Some("Tosa higiênica incluída".into()),
            total: Some(17000),
        }
    }

    fn tenant() -> TenantId {
        TenantId::parse("shop").unwrap()
    }

    fn billed(content: InvoiceContent) -> InvoiceEvent {
        InvoiceEvent::InvoiceBilled {
            tenant: tenant(),
            invoice_id: InvoiceId::parse("inv-1").unwrap(),
            customer_id: CustomerId::parse("c1").unwrap(),
            content,
        }
    }

    fn bill(content: InvoiceContent) -> InvoiceCommand {
        InvoiceCommand::Bill {
            tenant: tenant(),
            invoice_id: InvoiceId::parse("inv-1").unwrap(),
            customer_id: CustomerId::parse("c1").unwrap(),
            content,
        }
    }

    #[test]
    fn totals_add_up() {
        let bill = input().validate().unwrap();
        assert_eq!(bill.content.total, Centavos(17000));
        assert_eq!(bill.content.items[0].total(), Some(Centavos(8000)));
    }

    #[test]
    fn a_total_that_does_not_match_the_lines_is_refused() {
        let mut wrong = input();
        wrong.total = Some(17001);
        wrong.installments[1].amount = Some(9001);
        let problems = wrong.validate().unwrap_err();
        assert_eq!(problems.0.len(), 1);
        assert_eq!(problems.0[0].field, "total");
    }

    #[test]
    fn installments_must_add_up_to_the_total() {
        let mut wrong = input();
        wrong.installments[0].amount = Some(7000);
        let problems = wrong.validate().unwrap_err();
        assert_eq!(problems.0[0].field, "installments");
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut bad = input();
        bad.customer_id = Some("a b".into());
        bad.issue_date = Some("25/11/2026".into());
        bad.items[0].quantity = Some(0);
        bad.items[1].unit_price = Some(-5);
        bad.installments[0].payment_method = None;
        let fields: Vec<_> = bad
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(
            fields,
            [
                "customer_id",
                "issue_date",
                "items[0].quantity",
                "items[1].unit_price",
                "installments[0].payment_method"
            ]
        );
    }

    fn fields_of(input: &InvoiceInput) -> Vec<String> {
        input
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|p| p.field)
            .collect()
    }

    #[test]
    fn amounts_and_quantities_are_capped() {
        let mut bad = input();
        bad.items[0].unit_price = Some(i64::MAX);
        bad.items[0].discount = 10_000_000_000;
        bad.items[1].quantity = Some(MAX_QUANTITY + 1);
        bad.installments[0].amount = Some(i64::MAX);
        bad.total = Some(i64::MAX);
        assert_eq!(
            fields_of(&bad),
            [
                "items[0].unit_price",
                "items[0].discount",
                "items[1].quantity",
                "installments[0].amount",
                "total"
            ]
        );
        // Each figure at the cap, but the line over it.
        let mut line = input();
        line.items[1].quantity = Some(2);
        line.items[1].unit_price = Some(Centavos::MAX.0 as i64);
        assert_eq!(fields_of(&line), ["items[1]"]);
        // At the cap exactly: accepted.
        let mut max = input();
        max.items = vec![max.items[1].clone()];
        max.items[0].unit_price = Some(Centavos::MAX.0 as i64);
        max.installments = vec![max.installments[0].clone()];
        max.installments[0].amount = Some(Centavos::MAX.0 as i64);
        max.total = Some(Centavos::MAX.0 as i64);
        assert_eq!(max.validate().unwrap().content.total, Centavos::MAX);
    }

    #[test]
    fn many_lines_at_the_cap_are_refused_without_overflow() {
        let mut many = input();
        many.items = vec![
            LineItemInput {
                sku: Some("X".into()),
                description: Some("x".into()),
                quantity: Some(1),
                unit_price: Some(Centavos::MAX.0 as i64),
                discount: 0,
            };
            MAX_ITEMS
        ];
        many.total = Some(Centavos::MAX.0 as i64);
        many.installments = vec![many.installments[0].clone()];
        many.installments[0].amount = Some(Centavos::MAX.0 as i64);
        assert_eq!(fields_of(&many), ["items"]);
        many.items.push(many.items[0].clone());
        assert_eq!(fields_of(&many), ["items"]);
        many.items.truncate(1);
        many.installments = vec![many.installments[0].clone(); MAX_INSTALLMENTS + 1];
        assert_eq!(fields_of(&many), ["installments"]);
    }

    #[test]
    fn dates_are_plausible() {
        let mut bad = input();
        bad.issue_date = Some("1999-12-31".into());
        bad.installments[0].due_date = Some("2101-01-01".into());
        assert_eq!(fields_of(&bad), ["issue_date", "installments[0].due_date"]);
        let mut early = input();
        early.installments[0].due_date = Some("2026-11-24".into());
        assert_eq!(fields_of(&early), ["installments[0].due_date"]);
        let mut far = input();
        far.installments[1].due_date = Some("2036-11-26".into());
        assert_eq!(fields_of(&far), ["installments[1].due_date"]);
        let mut unordered = input();
        unordered.installments[0].due_date = Some("2027-01-01".into());
        assert_eq!(fields_of(&unordered), ["installments[1].due_date"]);
        let mut edge = input();
        edge.issue_date = Some("2100-12-31".into());
        edge.installments[0].due_date = Some("2100-12-31".into());
        edge.installments[1].due_date = Some("2100-12-31".into());
        assert!(edge.validate().is_ok());
    }

    #[test]
    fn control_characters_are_refused_in_text_and_allowed_as_line_breaks_in_notes() {
        let mut bad = input();
        bad.number = Some("10\u{0}01".into());
        bad.items[0].sku = Some("BA\tNHO".into());
        bad.items[1].description = Some("Vacina\u{1b}[2J".into());
        bad.installments[0].payment_method = Some("pix\u{7f}".into());
        bad.notes = Some("laço\u{0}rosa".into());
        assert_eq!(
            fields_of(&bad),
            [
                "number",
                "items[0].sku",
                "items[1].description",
                "installments[0].payment_method",
                "notes"
            ]
        );
        let mut ok = input();
        ok.notes = Some("linha 1\r\nlinha 2\tcom tab".into());
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn a_discount_larger_than_the_line_is_refused() {
        let mut bad = input();
        bad.items[1].discount = 9001;
        let problems = bad.validate().unwrap_err();
        assert_eq!(problems.0[0].field, "items[1].discount");
    }

    #[test]
    fn empty_items_and_installments_are_refused() {
        let mut bad = input();
        bad.items.clear();
        bad.installments.clear();
        bad.total = Some(0);
        let fields: Vec<_> = bad
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(fields, ["items", "installments"]);
    }

    #[test]
    fn billing_needs_a_registered_customer() {
        let content = input().validate().unwrap().content;
        TestFramework::<Invoice>::with(services(false))
            .given_no_previous_events()
            .when(bill(content.clone()))
            .then_expect_error(InvoiceError::UnknownCustomer("c1".into()));
        TestFramework::<Invoice>::with(services(true))
            .given_no_previous_events()
            .when(bill(content.clone()))
            .then_expect_events(vec![billed(content)]);
    }

    #[test]
    fn an_invoice_is_billed_once() {
        let content = input().validate().unwrap().content;
        TestFramework::<Invoice>::with(services(true))
            .given(vec![billed(content.clone())])
            .when(bill(content))
            .then_expect_error(InvoiceError::AlreadyBilled);
    }

    #[test]
    fn an_update_names_changes_and_an_identical_one_appends_nothing() {
        let content = input().validate().unwrap().content;
        let update = |content: InvoiceContent| InvoiceCommand::Update {
            tenant: tenant(),
            customer_id: CustomerId::parse("c1").unwrap(),
            content,
        };
        TestFramework::<Invoice>::with(services(true))
            .given(vec![billed(content.clone())])
            .when(update(content.clone()))
            .then_expect_events(vec![]);
        let mut changed = content.clone();
        changed.notes = None;
        TestFramework::<Invoice>::with(services(true))
            .given(vec![billed(content)])
            .when(update(changed.clone()))
            .then_expect_events(vec![InvoiceEvent::InvoiceUpdated {
                changed_fields: vec!["notes".into()],
                content: changed,
            }]);
    }

    #[test]
    fn updating_before_billing_or_changing_the_customer_is_refused() {
        let content = input().validate().unwrap().content;
        TestFramework::<Invoice>::with(services(true))
            .given_no_previous_events()
            .when(InvoiceCommand::Update {
                tenant: tenant(),
                customer_id: CustomerId::parse("c1").unwrap(),
                content: content.clone(),
            })
            .then_expect_error(InvoiceError::NotBilled);
        TestFramework::<Invoice>::with(services(true))
            .given(vec![billed(content.clone())])
            .when(InvoiceCommand::Update {
                tenant: tenant(),
                customer_id: CustomerId::parse("c2").unwrap(),
                content,
            })
            .then_expect_error(InvoiceError::CustomerChanged("c1".into()));
    }

    #[test]
    fn a_cancelled_invoice_cannot_change() {
        let content = input().validate().unwrap().content;
        let history = vec![
            billed(content.clone()),
            InvoiceEvent::InvoiceCancelled { reason: None },
        ];
        let mut changed = content;
        changed.notes = Some("outra".into());
        TestFramework::<Invoice>::with(services(true))
            .given(history.clone())
            .when(InvoiceCommand::Update {
                tenant: tenant(),
                customer_id: CustomerId::parse("c1").unwrap(),
                content: changed,
            })
            .then_expect_error(InvoiceError::Cancelled);
        TestFramework::<Invoice>::with(services(true))
            .given(history)
            .when(InvoiceCommand::Cancel {
                tenant: tenant(),
                reason: None,
            })
            .then_expect_error(InvoiceError::Cancelled);
    }

    #[test]
    fn another_tenant_cannot_touch_the_invoice() {
        let content = input().validate().unwrap().content;
        TestFramework::<Invoice>::with(services(true))
            .given(vec![billed(content)])
            .when(InvoiceCommand::Cancel {
                tenant: TenantId::parse("other").unwrap(),
                reason: None,
            })
            .then_expect_error(InvoiceError::WrongTenant("shop".into()));
    }

    #[test]
    fn sync_records_move_the_state() {
        let content = input().validate().unwrap().content;
        let mut invoice = Invoice::default();
        invoice.apply(billed(content));
        invoice.apply(InvoiceEvent::SyncFailed {
            cause: FailureCause::BlingUnavailable {
                message: "503".into(),
            },
            attempt: 2,
            retry_at: None,
            calls: vec![],
        });
        assert_eq!(invoice.failed_attempts, 2);
        invoice.apply(InvoiceEvent::SalesOrderCreated {
            bling_order_id: 10,
            bling_number: Some(1),
            created: true,
            content_version: 1,
            calls: vec![],
        });
        assert_eq!(invoice.bling_order_id, Some(10));
        assert_eq!(invoice.failed_attempts, 0);
    }

    #[test]
    fn parking_is_recorded_once_until_work_resumes() {
        let content = input().validate().unwrap().content;
        let parked = InvoiceEvent::SyncParked {
            reason: "authorization revoked".into(),
        };
        TestFramework::<Invoice>::with(services(true))
            .given(vec![billed(content.clone()), parked.clone()])
            .when(InvoiceCommand::RecordSyncParked {
                reason: "again".into(),
            })
            .then_expect_events(vec![]);
        TestFramework::<Invoice>::with(services(true))
            .given(vec![
                billed(content),
                parked,
                InvoiceEvent::SyncResumed {
                    reason: "reconnected".into(),
                },
            ])
            .when(InvoiceCommand::RecordSyncParked {
                reason: "revoked again".into(),
            })
            .then_expect_events(vec![InvoiceEvent::SyncParked {
                reason: "revoked again".into(),
            }]);
    }
    fn authorized() -> NfeObserved {
        NfeObserved::Authorized {
            document: NfeDocument {
                numero: "000001".into(),
                serie: 1,
                chave_acesso: "3".repeat(44),
                link_danfe: "https://x/danfe".into(),
                link_pdf: "https://x/pdf".into(),
            },
        }
    }

    fn observe(observed: NfeObserved, source: Source) -> InvoiceCommand {
        InvoiceCommand::RecordNfeState {
            nfe_id: 7,
            observed,
            source,
            calls: vec![],
        }
    }

    #[test]
    fn an_nfe_state_is_recorded_once_whoever_tells() {
        let content = input().validate().unwrap().content;
        let generated = InvoiceEvent::NfeGenerated {
            nfe_id: 7,
            calls: vec![],
        };
        let document = match authorized() {
            NfeObserved::Authorized { document } => document,
            _ => unreachable!(),
        };
        let event = InvoiceEvent::NfeAuthorized {
            nfe_id: 7,
            document,
            source: Source::Webhook,
            calls: vec![],
        };
        TestFramework::<Invoice>::with(services(true))
            .given(vec![billed(content.clone()), generated.clone()])
            .when(observe(authorized(), Source::Webhook))
            .then_expect_events(vec![event.clone()]);
        // The same state again (a duplicate, the poll after the webhook): nothing.
        TestFramework::<Invoice>::with(services(true))
            .given(vec![billed(content), generated, event])
            .when(observe(authorized(), Source::Poll))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_rejection_is_a_classified_failure_and_only_it_can_be_retried() {
        let content = input().validate().unwrap().content;
        let generated = InvoiceEvent::NfeGenerated {
            nfe_id: 7,
            calls: vec![],
        };
        let rejected = InvoiceEvent::SyncFailed {
            cause: FailureCause::NfeRejected {
                nfe_id: 7,
                reason: "Rejeição 237: CPF do destinatário inválido".into(),
                fix: NfeFix::CustomerRecord,
            },
            attempt: 1,
            retry_at: None,
            calls: vec![],
        };
        TestFramework::<Invoice>::with(services(true))
            .given(vec![billed(content.clone()), generated.clone()])
            .when(observe(
                NfeObserved::Rejected {
                    reason: "Rejeição 237: CPF do destinatário inválido".into(),
                },
                Source::Send,
            ))
            .then_expect_events(vec![rejected.clone()]);
        TestFramework::<Invoice>::with(services(true))
            .given(vec![billed(content.clone()), generated.clone(), rejected])
            .when(InvoiceCommand::RetryNfe { by: "ana".into() })
            .then_expect_events(vec![InvoiceEvent::NfeRetryRequested {
                nfe_id: 7,
                by: "ana".into(),
            }]);
        TestFramework::<Invoice>::with(services(true))
            .given(vec![billed(content), generated])
            .when(InvoiceCommand::RetryNfe { by: "ana".into() })
            .then_expect_error(InvoiceError::Nfe(NfeCommandError::NotRejected("generated")));
    }

    #[test]
    fn an_old_refusal_seen_after_a_retry_of_our_send_is_not_recorded_again() {
        let content = input().validate().unwrap().content;
        let generated = InvoiceEvent::NfeGenerated {
            nfe_id: 7,
            calls: vec![],
        };
        let sent = InvoiceEvent::NfeSent {
            nfe_id: 7,
            calls: vec![],
        };
        let rejected = InvoiceEvent::SyncFailed {
            cause: FailureCause::NfeRejected {
                nfe_id: 7,
                reason: "Rejeição 237: CPF do destinatário inválido".into(),
                fix: NfeFix::CustomerRecord,
            },
            attempt: 1,
            retry_at: None,
            calls: vec![],
        };
        let retry = InvoiceEvent::NfeRetryRequested {
            nfe_id: 7,
            by: "ana".into(),
        };
        let refusal = || NfeObserved::Rejected {
            reason: "Rejeição 237: CPF do destinatário inválido".into(),
        };
        let history = vec![
            billed(content.clone()),
            generated.clone(),
            sent.clone(),
            rejected.clone(),
            retry.clone(),
        ];
        // Seen by a webhook or a poll before the ledger sends again: nothing recorded.
        for source in [Source::Webhook, Source::Poll] {
            TestFramework::<Invoice>::with(services(true))
                .given(history.clone())
                .when(observe(refusal(), source))
                .then_expect_events(vec![]);
        }
        // After the ledger's send, a refusal is SEFAZ's new answer.
        let mut after_send = history.clone();
        after_send.push(sent);
        TestFramework::<Invoice>::with(services(true))
            .given(after_send)
            .when(observe(refusal(), Source::Webhook))
            .then_expect_events(vec![rejected.clone()]);
        // The shop sends from Bling's screen (the ledger never sent): every refusal counts.
        TestFramework::<Invoice>::with(services(true))
            .given(vec![billed(content), generated, rejected.clone(), retry])
            .when(observe(refusal(), Source::Webhook))
            .then_expect_events(vec![rejected]);
    }

    #[test]
    fn rejection_reasons_say_whose_data_to_fix() {
        assert_eq!(
            NfeFix::classify("Rejeição 237: CPF do destinatário inválido"),
            NfeFix::CustomerRecord
        );
        assert_eq!(
            NfeFix::classify("Rejeição 778: Informado NCM inexistente"),
            NfeFix::ProductFiscalData
        );
        assert_eq!(
            NfeFix::classify("Rejeição 280: Certificado Transmissor inválido"),
            NfeFix::AccountSetup
        );
        assert_eq!(NfeFix::classify("Rejeição 999: Erro"), NfeFix::Unknown);
    }

    #[test]
    fn the_same_divergence_is_recorded_once() {
        let content = input().validate().unwrap().content;
        let divergence = Divergence {
            bling_order_id: 9,
            expected: OrderFacts {
                situacao_id: Some(9),
                total: Some(17000),
            },
            found: OrderFacts {
                situacao_id: Some(12),
                total: Some(17000),
            },
            changed_by: "the shop in Bling".into(),
            source: Source::Webhook,
        };
        let diverged = InvoiceEvent::OrderDiverged {
            divergence: divergence.clone(),
            calls: vec![],
        };
        TestFramework::<Invoice>::with(services(true))
            .given(vec![billed(content.clone()), diverged.clone()])
            .when(InvoiceCommand::RecordDivergence {
                divergence: divergence.clone(),
                calls: vec![],
            })
            .then_expect_events(vec![]);
        TestFramework::<Invoice>::with(services(true))
            .given(vec![billed(content), diverged])
            .when(InvoiceCommand::ResolveDivergence {
                choice: DivergenceChoice::PushOurs,
                by: "ana".into(),
            })
            .then_expect_events(vec![InvoiceEvent::DivergenceResolved {
                choice: DivergenceChoice::PushOurs,
                by: "ana".into(),
                divergence,
            }]);
    }
}
