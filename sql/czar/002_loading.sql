-- qserv_py czar metadata, version 2: bulk loading.

-- How a catalog's layout was built (set by its first director load).
ALTER TABLE qserv_meta.catalogs ADD COLUMN layout jsonb;

ALTER TABLE qserv_meta.load_txns
    ADD COLUMN options jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN overlap_rows bigint NOT NULL DEFAULT 0,
    ADD COLUMN finished_at timestamptz;

-- The input files of a load, in order; `done` once all their rows are staged.
CREATE TABLE qserv_meta.load_files (
    txn             bigint NOT NULL REFERENCES qserv_meta.load_txns ON DELETE CASCADE,
    file_no         integer NOT NULL,
    path            text NOT NULL,
    size            bigint NOT NULL,
    rows            bigint NOT NULL,
    done            boolean NOT NULL DEFAULT false,
    PRIMARY KEY (txn, file_no)
);

-- Rows staged per chunk, and where a load puts each chunk it stages.
CREATE TABLE qserv_meta.load_chunks (
    txn             bigint NOT NULL REFERENCES qserv_meta.load_txns ON DELETE CASCADE,
    chunk_id        bigint NOT NULL,
    rows            bigint NOT NULL DEFAULT 0,
    overlap_rows    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (txn, chunk_id)
);

CREATE TABLE qserv_meta.load_placement (
    txn             bigint NOT NULL REFERENCES qserv_meta.load_txns ON DELETE CASCADE,
    chunk_id        bigint NOT NULL,
    worker          text NOT NULL REFERENCES qserv_meta.workers,
    PRIMARY KEY (txn, chunk_id, worker)
);

-- Director indexes (key -> chunk, spatial_index) live in this schema, one table per
-- director table: qserv_dirindex.<catalog>__<table>. Staging tables of loads live in
-- qserv_stage on the czar and on the workers.
CREATE SCHEMA IF NOT EXISTS qserv_dirindex;
CREATE SCHEMA IF NOT EXISTS qserv_stage;
