-- LGPD erasure (src/store/personal.rs): each customer's personal data is stored in its events
-- encrypted under a data key of its own; this table holds that key, wrapped (encrypted) by the
-- master key. Erasure destroys the key: `wrapped_key` becomes NULL and `erased_at_ms` says
-- when. The row stays as a tombstone, so that readers tell "erased" from "never had a key"
-- (an event written before encryption existed) and no new key is ever made for the customer.
CREATE TABLE customer_keys
(
    stream_id     text   PRIMARY KEY,
    tenant        text   NOT NULL,
    wrapped_key   text,
    created_at_ms bigint NOT NULL,
    erased_at_ms  bigint,
    CHECK ((wrapped_key IS NULL) = (erased_at_ms IS NOT NULL))
);
