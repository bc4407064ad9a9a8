-- A fleet of shops (issue #13).

-- Leases that fence. A lease row is kept when released (its expiry set to 0), so its fence only
-- grows: every time the tenant passes to a holder the fence is bumped, and every write of a
-- job's outcome names the holder and fence it was started under. A job whose lease was lost
-- therefore cannot write, even if its holder takes the tenant again later.
ALTER TABLE sync_leases ADD COLUMN fence bigint NOT NULL DEFAULT 0;

-- Renewals at fleet scale: when to renew each connection and by when it must be done, kept on
-- the row so that the renewal loop finds the due ones, earliest deadline first, by an index
-- instead of decrypting every credential.
--   renew_at_ms:       a busy shop's access token ahead of its expiry; an idle shop's refresh
--                      token ahead of its 30-day end;
--   renew_deadline_ms: what lapses if the renewal does not happen (access or refresh expiry);
--   used_at_ms:        the first use of the current access token (NULL: idle since renewal);
--   refresh_sent_at_ms: a refresh was sent and no answer came: Bling may have rotated the
--                      refresh token and we never saw the new one (a lost rotation).
ALTER TABLE bling_credentials ADD COLUMN renew_at_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE bling_credentials ADD COLUMN renew_deadline_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE bling_credentials ADD COLUMN used_at_ms bigint;
ALTER TABLE bling_credentials ADD COLUMN refresh_issued_at_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE bling_credentials ADD COLUMN refresh_sent_at_ms bigint;
UPDATE bling_credentials SET
    refresh_issued_at_ms = COALESCE(last_refresh_at_ms, connected_at_ms),
    renew_at_ms = access_expires_at_ms - 1800000,
    renew_deadline_ms = access_expires_at_ms;
CREATE INDEX bling_credentials_renew ON bling_credentials (renew_at_ms) WHERE status = 'active';

-- Where the scheduler looks for tenants with due work, the longest-waiting first.
CREATE INDEX sync_work_pending_due ON sync_work (due_at_ms, tenant) WHERE state = 'pending';
