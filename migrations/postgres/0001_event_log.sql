-- The event log. The first seven columns are the ones postgres-es writes; the rest are ours.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    -- Insertion order inside one transaction.
    insert_id       bigint GENERATED ALWAYS AS IDENTITY,
    -- The writing transaction. Readers only take events whose transaction is older than every
    -- transaction still in flight, so a late commit can never land behind a reader.
    tx_id           xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    -- Assigned after commit by the sequencer (see src/store/log.rs): dense, never reordered.
    global_position bigint UNIQUE,
    tenant          text GENERATED ALWAYS AS (metadata ->> 'tenant') STORED,
    recorded_at     timestamptz                  NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE INDEX events_awaiting_position ON events (tx_id, insert_id) WHERE global_position IS NULL;
CREATE INDEX events_by_tenant ON events (tenant, global_position);

CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Responses remembered for the Idempotency-Key header.
CREATE TABLE idempotency_keys
(
    tenant        text        NOT NULL,
    key           text        NOT NULL,
    request_hash  text        NOT NULL,
    status_code   integer,
    response_body text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, key)
);
