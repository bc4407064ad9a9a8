-- The event log. The first seven columns are the ones sqlite-es writes; the rest are ours.
CREATE TABLE events
(
    aggregate_type  text                          NOT NULL,
    aggregate_id    text                          NOT NULL,
    sequence        integer CHECK (sequence >= 0) NOT NULL,
    event_type      text                          NOT NULL,
    event_version   text                          NOT NULL,
    payload         text                          NOT NULL,
    metadata        text                          NOT NULL,
    global_position integer,
    tenant          text GENERATED ALWAYS AS (json_extract(metadata, '$.tenant')) VIRTUAL,
    recorded_at     text                          NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

CREATE UNIQUE INDEX events_by_position ON events (global_position);
CREATE INDEX events_by_tenant ON events (tenant, global_position);

-- SQLite has one writer at a time and this runs inside the writing transaction, so positions
-- are handed out in commit order and no reader can ever see a gap fill in later.
CREATE TRIGGER events_assign_position AFTER INSERT ON events
BEGIN
    UPDATE events
    SET global_position = (SELECT COALESCE(MAX(global_position), 0) + 1 FROM events)
    WHERE rowid = NEW.rowid;
END;

CREATE TABLE snapshots
(
    aggregate_type   text                                  NOT NULL,
    aggregate_id     text                                  NOT NULL,
    last_sequence    integer CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot integer CHECK (current_snapshot >= 0) NOT NULL,
    payload          text                                  NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;

CREATE TABLE idempotency_keys
(
    tenant        text    NOT NULL,
    key           text    NOT NULL,
    request_hash  text    NOT NULL,
    status_code   integer,
    response_body text,
    created_at    text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (tenant, key)
) STRICT;
