-- Bling talks back, what was left (issue #14): refused deliveries kept for support in a bounded
-- table, and the deliveries about one Bling resource found by its id (the order watch asks
-- whether Bling's webhooks told the ledger about an order).

-- Refused (unsigned or wrongly signed) deliveries, the newest 1,000 at most (the writer deletes
-- older rows in the same transaction). Anyone can send them: nothing here is trusted, and the
-- claimed fields are what the body said, unverified.
CREATE TABLE webhook_refusals
(
    id                 integer PRIMARY KEY AUTOINCREMENT,
    at_ms              integer NOT NULL,
    source             text   NOT NULL,
    reason             text   NOT NULL,
    claimed_company_id text,
    claimed_event_id   text,
    claimed_event      text,
    bytes              integer NOT NULL
) STRICT;
CREATE INDEX webhook_refusals_company ON webhook_refusals (claimed_company_id, id);

-- How many refusals came from each source (the peer's address) for each reason. At most 1,000
-- (source, reason) pairs: beyond that, new sources are counted under 'other'.
CREATE TABLE webhook_refusal_counts
(
    source      text   NOT NULL,
    reason      text   NOT NULL,
    refused     integer NOT NULL,
    first_at_ms integer NOT NULL,
    last_at_ms  integer NOT NULL,
    PRIMARY KEY (source, reason)
) STRICT;

CREATE INDEX webhook_deliveries_resource ON webhook_deliveries (tenant, resource_id);

-- The order watch (kind 'watch'): when its window opened (the ledger's last change to the order
-- in Bling, or the NF-e's authorization); its reads fall at fixed offsets from it.
ALTER TABLE sync_work ADD COLUMN watch_from_ms integer;
