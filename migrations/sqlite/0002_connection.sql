-- Bling credentials, encrypted (AES-256-GCM, key from configuration). Never in the event log.
-- Times are Unix epoch milliseconds, the same on both backends.
CREATE TABLE bling_credentials
(
    tenant               text PRIMARY KEY,
    version              integer NOT NULL,
    access_token         text    NOT NULL,
    refresh_token        text    NOT NULL,
    access_expires_at_ms integer NOT NULL,
    scope                text    NOT NULL DEFAULT '',
    status               text    NOT NULL DEFAULT 'active',
    connected_at_ms      integer NOT NULL,
    last_refresh_at_ms   integer,
    last_error           text,
    last_error_at_ms     integer
) STRICT;

CREATE TABLE oauth_states
(
    state_digest  text PRIMARY KEY,
    tenant        text    NOT NULL,
    requested_by  text    NOT NULL,
    expires_at_ms integer NOT NULL,
    used_at_ms    integer
) STRICT;

CREATE TABLE token_endpoint_calls
(
    id     integer PRIMARY KEY AUTOINCREMENT,
    at_ms  integer NOT NULL,
    tenant text    NOT NULL
) STRICT;
CREATE INDEX token_endpoint_calls_at ON token_endpoint_calls (at_ms);
