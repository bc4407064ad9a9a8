-- An event has no position until the sequencer numbers it, after its commit (see
-- src/store/log.rs). Indexing unnumbered rows by position and by tenant made every append
-- write two index entries that held only NULL positions and that the sequencer's update
-- immediately superseded. Every reader asks for numbered events (`global_position > $1`), so
-- these indexes keep only those.
ALTER TABLE events DROP CONSTRAINT events_global_position_key;
CREATE UNIQUE INDEX events_global_position ON events (global_position)
    WHERE global_position IS NOT NULL;
DROP INDEX events_by_tenant;
CREATE INDEX events_by_tenant ON events (tenant, global_position)
    WHERE global_position IS NOT NULL;
