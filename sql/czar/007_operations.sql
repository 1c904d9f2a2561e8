-- qserv_py czar metadata, version 7: cluster operations (qserv_py.ops).

-- What a worker is for: 'active' takes queries and new chunks; 'draining' still answers
-- for the chunks it holds while they move away and gets no new ones; 'removable' holds
-- nothing any more; 'lost' was declared gone by an operator (its copies no longer count).
ALTER TABLE qserv_meta.workers
    ADD COLUMN state text NOT NULL DEFAULT 'active'
        CHECK (state IN ('active', 'draining', 'removable', 'lost')),
    ADD COLUMN state_since timestamptz NOT NULL DEFAULT now();

-- The replication level of a catalog: how many workers should hold each of its chunks.
-- A load with --replication N raises it to N; `qserv-py replicate --level N` sets it.
ALTER TABLE qserv_meta.catalogs
    ADD COLUMN replication integer NOT NULL DEFAULT 1 CHECK (replication >= 1);
UPDATE qserv_meta.catalogs c SET replication = greatest(1, coalesce(
    (SELECT max(n) FROM (SELECT count(*) AS n FROM qserv_meta.placement p
                         WHERE p.catalog = c.name GROUP BY p.chunk_id) AS per_chunk), 1));

-- The placement's version: every statement that changes qserv_meta.placement (or a
-- worker's state) adds one, in its transaction. A query plans against one version; a
-- chunk's old copy is dropped only once no query planned before its move can use it.
CREATE TABLE qserv_meta.placement_version (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    version     bigint NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO qserv_meta.placement_version (version) VALUES (1);

CREATE FUNCTION qserv_meta.placement_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE qserv_meta.placement_version SET version = version + 1, changed_at = now();
    RETURN NULL;
END $$;

CREATE TRIGGER placement_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON qserv_meta.placement FOR EACH STATEMENT EXECUTE FUNCTION qserv_meta.placement_changed();
CREATE TRIGGER placement_changed AFTER UPDATE OF state OR DELETE
    ON qserv_meta.workers FOR EACH STATEMENT EXECUTE FUNCTION qserv_meta.placement_changed();
-- clients re-read what they plan with when a worker's state changes, too
CREATE TRIGGER notify_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON qserv_meta.workers FOR EACH STATEMENT EXECUTE FUNCTION qserv_meta.notify_change();
