-- Where each follower of the log (the sync dispatcher, each projection) has read up to,
-- written in the same transaction as the work it derived.
CREATE TABLE checkpoints
(
    name          text PRIMARY KEY,
    position      bigint NOT NULL,
    updated_at_ms bigint NOT NULL
);

-- The sync worker's to-do list: one row per customer (contato) and per invoice (pedido) that
-- Bling must be made to match. Derived from the log by the dispatcher; the outcome of every
-- attempt is an event on the customer or invoice, this table only says what to do next.
CREATE TABLE sync_work
(
    tenant               text NOT NULL,
    kind                 text NOT NULL, -- contact | invoice
    key                  text NOT NULL, -- customer id | invoice id
    customer_id          text NOT NULL,
    state                text NOT NULL, -- pending | parked | blocked | failed | done
    due_at_ms            bigint NOT NULL,
    attempts             bigint NOT NULL DEFAULT 0,
    -- Position of the oldest event not yet synced: work runs in this order per tenant.
    first_position       bigint NOT NULL,
    -- Position of the newest event seen: a job that finishes while a newer event arrived stays
    -- pending.
    last_position        bigint NOT NULL,
    -- Set before a create is sent to Bling: the next attempt must look before creating again.
    create_sent          bigint NOT NULL DEFAULT 0,
    -- Why parked or failed work was taken up again; recorded as SyncResumed when it runs.
    resume_reason        text,
    last_error           text,
    PRIMARY KEY (tenant, kind, key)
);
CREATE INDEX sync_work_due ON sync_work (state, due_at_ms);
CREATE INDEX sync_work_by_customer ON sync_work (tenant, customer_id);

-- One worker at a time per tenant (its 3 req/s are the tenant's, and order per customer holds).
CREATE TABLE sync_leases
(
    tenant        text PRIMARY KEY,
    holder        text NOT NULL,
    expires_at_ms bigint NOT NULL
);
