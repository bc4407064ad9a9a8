-- Read models for support (see projections/ and src/projections/). Each view is derived from
-- the event log by the projection runner, which writes the rows and the projection's
-- checkpoint (`checkpoints.name = 'projection:<name>'`) in one transaction. `bling-ledger
-- projections rebuild` truncates them and replays the log. Times are epoch milliseconds.

-- invoice_sync: one row per invoice.
CREATE TABLE proj_invoices
(
    tenant             text   NOT NULL,
    invoice_id         text   NOT NULL,
    customer_id        text   NOT NULL,
    number             text   NOT NULL,
    total_centavos     bigint NOT NULL,
    issue_date         text   NOT NULL,
    billed_at_ms       bigint NOT NULL,
    billed_position    bigint NOT NULL,
    content_version    bigint NOT NULL,
    synced_version     bigint,
    bling_order_id     bigint,
    bling_number       bigint,
    situacao_id        bigint,
    situacao_name      text,
    situacao_position  bigint,
    nfe_id             bigint,
    cancelled          bigint NOT NULL,
    cancelled_position bigint,
    cancel_reason      text,
    last_outcome       text   NOT NULL,
    state              text   NOT NULL, -- pending | synced | failed | parked | cancelled
    last_cause_kind    text,
    last_cause_message text,
    last_failure_at_ms bigint,
    retry_at_ms        bigint,
    attempts           bigint NOT NULL,
    failures_total     bigint NOT NULL,
    updated_at_ms      bigint NOT NULL,
    last_position      bigint NOT NULL,
    PRIMARY KEY (tenant, invoice_id)
);
-- The list, newest first, by state, by cause; search by number; a customer's invoices.
CREATE INDEX proj_invoices_list ON proj_invoices (tenant, billed_position);
CREATE INDEX proj_invoices_state ON proj_invoices (tenant, state, billed_position);
CREATE INDEX proj_invoices_cause ON proj_invoices (tenant, last_cause_kind, billed_position);
CREATE INDEX proj_invoices_number ON proj_invoices (tenant, number);
CREATE INDEX proj_invoices_customer ON proj_invoices (tenant, customer_id, billed_position);

-- timeline: one entry per event, under its subject (invoice, customer, connection). The
-- primary key is the history query's index: an invoice's entries, its customer's in a
-- position window, the connection's in the same window.
CREATE TABLE proj_timeline
(
    tenant           text   NOT NULL,
    subject          text   NOT NULL,
    subject_id       text   NOT NULL,
    position         bigint NOT NULL,
    recorded_at_ms   bigint NOT NULL,
    event_type       text   NOT NULL,
    actor            text,
    correlation_id   text,
    summary          text   NOT NULL,
    calls            text   NOT NULL,
    connection_state text   NOT NULL,
    cause_kind       text,
    cause_message    text,
    detail           text   NOT NULL,
    PRIMARY KEY (tenant, subject, subject_id, position)
);
-- The timeline's own record of each tenant's connection state.
CREATE TABLE proj_timeline_tenants
(
    tenant text PRIMARY KEY,
    state  text NOT NULL
);

-- failures: one row per failed or parked attempt.
CREATE TABLE proj_failures
(
    position       bigint PRIMARY KEY,
    tenant         text   NOT NULL,
    subject        text   NOT NULL,
    invoice_id     text,
    invoice_number text,
    customer_id    text,
    recorded_at_ms bigint NOT NULL,
    outcome        text   NOT NULL,
    cause_kind     text   NOT NULL,
    message        text   NOT NULL,
    evidence       text   NOT NULL,
    attempt        bigint,
    retry_at_ms    bigint
);
CREATE INDEX proj_failures_tenant ON proj_failures (tenant, position);
CREATE INDEX proj_failures_cause ON proj_failures (tenant, cause_kind, position);
CREATE INDEX proj_failures_time ON proj_failures (tenant, recorded_at_ms);
-- The failures view's directory of invoices (customer and number).
CREATE TABLE proj_failure_invoices
(
    tenant      text NOT NULL,
    invoice_id  text NOT NULL,
    customer_id text NOT NULL,
    number      text NOT NULL,
    PRIMARY KEY (tenant, invoice_id)
);

-- connections: one row per tenant.
CREATE TABLE proj_connections
(
    tenant               text PRIMARY KEY,
    state                text   NOT NULL,
    scopes               text,
    connected_at_ms      bigint,
    access_expires_at_ms bigint,
    token_fingerprint    text,
    last_refresh_at_ms   bigint,
    last_error           text,
    last_error_at_ms     bigint,
    revoked_since_ms     bigint,
    revoked_evidence     text,
    disconnected_at_ms   bigint,
    disconnected_by      text,
    updated_at_ms        bigint NOT NULL,
    last_position        bigint NOT NULL
);

-- customers: one row per customer.
CREATE TABLE proj_customers
(
    tenant             text   NOT NULL,
    customer_id        text   NOT NULL,
    name               text   NOT NULL,
    tax_id             text   NOT NULL,
    person_type        text   NOT NULL,
    profile_version    bigint NOT NULL,
    synced_version     bigint,
    bling_contact_id   bigint,
    state              text   NOT NULL,
    failed_version     bigint,
    last_cause_kind    text,
    last_cause_message text,
    last_failure_at_ms bigint,
    registered_at_ms   bigint NOT NULL,
    updated_at_ms      bigint NOT NULL,
    last_position      bigint NOT NULL,
    PRIMARY KEY (tenant, customer_id)
);
CREATE INDEX proj_customers_tax_id ON proj_customers (tenant, tax_id);
