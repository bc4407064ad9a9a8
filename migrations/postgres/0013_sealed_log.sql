-- The log sealed at sequencing (src/store/events/seals.rs): when an event gets its global
-- position it also gets `hash`, the link of the global chain, and `tenant_hash`, the link of
-- its tenant's chain, both `hex(sha256(prev ‖ canonical bytes of the event))`. Events that
-- predate this migration are sealed by the sequencer's next pass, in position order.
ALTER TABLE events ADD COLUMN hash text, ADD COLUMN tenant_hash text;

-- The head of every chain: '*' is the global chain, a tenant id its tenant's chain, '' the
-- chain of events that name no tenant. A cache the sealer extends in the same transaction as
-- the events it seals; verification never trusts it (it recomputes from the events).
CREATE TABLE seal_heads
(
    chain    text PRIMARY KEY,
    position    bigint  NOT NULL,
    hash        text    NOT NULL
);
INSERT INTO seal_heads (chain, position, hash)
VALUES ('*', 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Signed checkpoints: an Ed25519 signature over (position, global head, Merkle root of the
-- tenant heads, time). `statement` is the exact signed text; `heads` the tree's leaves (JSON),
-- kept so that a tenant's Merkle proof never depends on the other tenants' rows as they are
-- later.
CREATE TABLE seal_checkpoints
(
    position    bigint PRIMARY KEY,
    head_hash   text    NOT NULL,
    tenant_root text    NOT NULL,
    tenants     bigint  NOT NULL,
    signed_at   text    NOT NULL,
    key_id      text    NOT NULL,
    statement   text    NOT NULL,
    signature   text    NOT NULL,
    heads       text    NOT NULL
);
