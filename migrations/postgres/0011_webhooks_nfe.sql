-- Bling talks back (issue #14): webhook deliveries, the Bling company of each tenant, and the
-- NF-e and divergence columns of the invoice view.

-- Every signed delivery, stored before it is answered. One row per eventId: a duplicate
-- delivery only counts (`times_received`). `state`: received (to process) | processed |
-- ignored (nothing of ours) | unknown_company (no tenant has this companyId) | failed.
CREATE TABLE webhook_deliveries
(
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         text   NOT NULL UNIQUE,
    company_id       text   NOT NULL,
    tenant           text,
    event            text   NOT NULL,
    resource_id      bigint,
    body             text   NOT NULL,
    state            text   NOT NULL,
    detail           text,
    times_received   bigint NOT NULL,
    attempts         bigint NOT NULL DEFAULT 0,
    due_at_ms        bigint NOT NULL,
    received_at_ms   bigint NOT NULL,
    last_received_ms bigint NOT NULL,
    processed_at_ms  bigint
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, due_at_ms);
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (tenant, id);
CREATE INDEX webhook_deliveries_company ON webhook_deliveries (company_id, id);

-- companyId (GET /empresas/me/dados-basicos `id`) → tenant, recorded at connect and reconnect.
CREATE TABLE bling_companies
(
    company_id     text PRIMARY KEY,
    tenant         text   NOT NULL,
    name           text   NOT NULL,
    recorded_at_ms bigint NOT NULL
);
CREATE INDEX bling_companies_tenant ON bling_companies (tenant);

ALTER TABLE proj_invoices ADD COLUMN nfe_status text;
ALTER TABLE proj_invoices ADD COLUMN nfe_numero text;
ALTER TABLE proj_invoices ADD COLUMN nfe_serie bigint;
ALTER TABLE proj_invoices ADD COLUMN nfe_chave text;
ALTER TABLE proj_invoices ADD COLUMN nfe_link_danfe text;
ALTER TABLE proj_invoices ADD COLUMN nfe_link_pdf text;
ALTER TABLE proj_invoices ADD COLUMN nfe_reason text;
ALTER TABLE proj_invoices ADD COLUMN divergence text;
-- Webhooks name Bling's ids: find the invoice of an NF-e or an order.
CREATE INDEX proj_invoices_nfe ON proj_invoices (tenant, nfe_id);
CREATE INDEX proj_invoices_order ON proj_invoices (tenant, bling_order_id);
