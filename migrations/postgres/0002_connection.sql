-- Bling credentials, encrypted (AES-256-GCM, key from configuration). Never in the event log.
-- Times are Unix epoch milliseconds, the same on both backends.
CREATE TABLE bling_credentials
(
    tenant               text PRIMARY KEY,
    -- Bumped on every write; writers say which version they read (a fence), so a stale
    -- writer can never overwrite a newer token.
    version              bigint NOT NULL,
    access_token         text   NOT NULL,
    refresh_token        text   NOT NULL,
    access_expires_at_ms bigint NOT NULL,
    scope                text   NOT NULL DEFAULT '',
    -- active | revoked | disconnected: a cache of the connection aggregate's state that the
    -- client reads on every call without replaying events.
    status               text   NOT NULL DEFAULT 'active',
    connected_at_ms      bigint NOT NULL,
    last_refresh_at_ms   bigint,
    last_error           text,
    last_error_at_ms     bigint
);

-- OAuth `state` values handed out by "connect": single use, short-lived, stored as a digest.
CREATE TABLE oauth_states
(
    state_digest  text PRIMARY KEY,
    tenant        text   NOT NULL,
    requested_by  text   NOT NULL,
    expires_at_ms bigint NOT NULL,
    used_at_ms    bigint
);

-- Every call to Bling's token endpoint, fleet-wide: Bling blocks an IP for an hour after 20
-- calls in 60 s, so all processes draw from one budget.
CREATE TABLE token_endpoint_calls
(
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms  bigint NOT NULL,
    tenant text   NOT NULL
);
CREATE INDEX token_endpoint_calls_at ON token_endpoint_calls (at_ms);
