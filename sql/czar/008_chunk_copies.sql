-- qserv_py czar metadata, version 8: chunk copies and moves (qserv_py.ops.chunks).

-- One row per copy of a chunk from one worker to another, written before anything is
-- built on the target, so that a crash is resumed or cleaned:
--   copying    the new tables are being built on the target (qserv_copy_<id>_<n> in the
--              catalog's schema, never attached): a copy found here whose coordinator is
--              gone gets its tables dropped and is 'abandoned' (or retried);
--   published  (moves) the target's partitions are attached and the placement moved, in
--              one two-phase commit; the source's copy is dropped once no query planned
--              before published_at can read it;
--   done       finished (a copy: in the two-phase commit itself);
--   abandoned  given up; nothing of it is left.
-- The coordinator holds a session advisory lock on the chunk on the czar while it works
-- (qserv_py.ops.chunks.chunk_lock), so a live copy is never taken for a crashed one.
CREATE TABLE qserv_meta.chunk_copies (
    id              bigserial PRIMARY KEY,
    catalog         text NOT NULL REFERENCES qserv_meta.catalogs ON DELETE CASCADE,
    chunk_id        bigint NOT NULL,
    source          text NOT NULL,
    target          text NOT NULL,
    move            boolean NOT NULL,
    state           text NOT NULL DEFAULT 'copying'
                        CHECK (state IN ('copying', 'published', 'done', 'abandoned')),
    tables          integer NOT NULL DEFAULT 0,     -- partitions copied
    rows            bigint NOT NULL DEFAULT 0,      -- rows copied (all partitions)
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz,
    finished_at     timestamptz,
    CHECK (source <> target)
);
-- at most one unfinished copy of a chunk to a worker
CREATE UNIQUE INDEX chunk_copies_active_idx ON qserv_meta.chunk_copies (catalog, chunk_id, target)
    WHERE state IN ('copying', 'published');
CREATE INDEX chunk_copies_unfinished_idx ON qserv_meta.chunk_copies (state)
    WHERE state IN ('copying', 'published');
