-- Outbound notifications to the pet-shop system (src/notify/): the endpoints a tenant
-- subscribed, the outbox of notifications derived from the log (written with the notifier's
-- checkpoint, in ledger order; also what the change feed serves), one delivery per message
-- and endpoint, every delivery attempt, and the shops' self-service reconnect links.
-- Times are Unix epoch milliseconds, the same on both backends.
CREATE TABLE notify_endpoints
(
    id               text PRIMARY KEY,
    tenant           text NOT NULL,
    url              text NOT NULL,
    -- The notification types sent there, comma-separated.
    event_types      text NOT NULL,
    description      text NOT NULL DEFAULT '',
    -- The signing secret (whsec_…), shown once when the endpoint is created.
    secret           text NOT NULL,
    enabled          integer NOT NULL DEFAULT 1,
    created_at_ms    integer NOT NULL,
    updated_at_ms    integer NOT NULL,
    -- The first failed attempt since the last success (NULL while the endpoint works).
    failing_since_ms integer,
    -- Set when the ledger disabled the endpoint itself (failing continuously).
    disabled_at_ms   integer,
    disabled_reason  text
) STRICT;
CREATE INDEX notify_endpoints_tenant ON notify_endpoints (tenant);

CREATE TABLE notify_messages
(
    id            text PRIMARY KEY,
    tenant        text NOT NULL,
    -- The ledger position of the event it came from (one message per event at most).
    position      integer NOT NULL,
    event_type    text NOT NULL,
    payload       text NOT NULL,
    created_at_ms integer NOT NULL
) STRICT;
CREATE UNIQUE INDEX notify_messages_feed ON notify_messages (tenant, position);
CREATE INDEX notify_messages_created ON notify_messages (tenant, created_at_ms);

CREATE TABLE notify_deliveries
(
    endpoint_id     text NOT NULL,
    message_id      text NOT NULL,
    tenant          text NOT NULL,
    position        integer NOT NULL,
    -- pending | delivered | failed (every attempt of the schedule failed)
    state           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_ms integer NOT NULL,
    last_status     integer,
    last_error      text,
    updated_at_ms   integer NOT NULL,
    PRIMARY KEY (endpoint_id, message_id)
) STRICT;
CREATE INDEX notify_deliveries_next ON notify_deliveries (endpoint_id, state, position);
CREATE INDEX notify_deliveries_due ON notify_deliveries (state, next_attempt_ms);

CREATE TABLE notify_attempts
(
    id               integer PRIMARY KEY AUTOINCREMENT,
    endpoint_id      text NOT NULL,
    message_id       text NOT NULL,
    tenant           text NOT NULL,
    attempt          integer NOT NULL,
    at_ms            integer NOT NULL,
    -- The receiver's HTTP status; NULL when no answer came (refused, timeout).
    status           integer,
    latency_ms       integer NOT NULL,
    error            text,
    response_excerpt text NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX notify_attempts_delivery ON notify_attempts (endpoint_id, message_id);

CREATE TABLE reconnect_links
(
    link_id       text PRIMARY KEY,
    tenant        text NOT NULL,
    -- Who asked: a support token's name, or 'connection.revoked'.
    created_by    text NOT NULL,
    created_at_ms integer NOT NULL,
    expires_at_ms integer NOT NULL,
    opened_at_ms  integer,
    used_at_ms    integer
) STRICT;
CREATE INDEX reconnect_links_tenant ON reconnect_links (tenant, created_at_ms);
