-- qserv_py czar metadata, version 1. Applied once by `qserv-py init`; never edited after
-- release: later changes go in new numbered files.

CREATE TABLE qserv_meta.workers (
    name        text PRIMARY KEY,
    dsn         text NOT NULL,              -- without password
    added_at    timestamptz NOT NULL DEFAULT now()
);

-- Identifiers are kept lower-case in `name` (as in PostgreSQL); `spelling` is the
-- schema file's spelling, which results and metadata show.
CREATE TABLE qserv_meta.catalogs (
    name            text PRIMARY KEY,
    spelling        text NOT NULL,
    description     text NOT NULL DEFAULT '',
    overlap_arcsec  double precision NOT NULL CHECK (overlap_arcsec > 0),
    schema_yaml     text NOT NULL,          -- the Felis file it was created from
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE qserv_meta.tables (
    catalog         text NOT NULL REFERENCES qserv_meta.catalogs ON DELETE CASCADE,
    name            text NOT NULL,
    spelling        text NOT NULL,
    ordinal         integer NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('director', 'child', 'replicated')),
    description     text NOT NULL DEFAULT '',
    key_column      text,                   -- single-column primary key
    ra_column       text,                   -- directors
    dec_column      text,
    director        text,                   -- children: their director table ...
    director_key    text,                   -- ... and the column holding its key
    PRIMARY KEY (catalog, name)
);

CREATE TABLE qserv_meta.columns (
    catalog         text NOT NULL,
    table_name      text NOT NULL,
    name            text NOT NULL,
    spelling        text NOT NULL,
    ordinal         integer NOT NULL,
    datatype        text NOT NULL,          -- Felis datatype
    length          integer,
    pg_type         text NOT NULL,
    nullable        boolean NOT NULL,
    unit            text NOT NULL DEFAULT '',
    ucd             text NOT NULL DEFAULT '',
    description     text NOT NULL DEFAULT '',
    principal       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (catalog, table_name, name),
    FOREIGN KEY (catalog, table_name) REFERENCES qserv_meta.tables ON DELETE CASCADE
);

-- The sky layout of a catalog: its chunks (HEALPix pixels by NUNIQ id).
CREATE TABLE qserv_meta.chunks (
    catalog         text NOT NULL REFERENCES qserv_meta.catalogs ON DELETE CASCADE,
    chunk_id        bigint NOT NULL,
    PRIMARY KEY (catalog, chunk_id)
);

-- Rows per table and chunk (published data only).
CREATE TABLE qserv_meta.chunk_stats (
    catalog         text NOT NULL,
    table_name      text NOT NULL,
    chunk_id        bigint NOT NULL,
    rows            bigint NOT NULL DEFAULT 0,
    overlap_rows    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (catalog, table_name, chunk_id),
    FOREIGN KEY (catalog, table_name) REFERENCES qserv_meta.tables ON DELETE CASCADE
);

-- Which workers hold which chunk (several with replication).
CREATE TABLE qserv_meta.placement (
    catalog         text NOT NULL,
    chunk_id        bigint NOT NULL,
    worker          text NOT NULL REFERENCES qserv_meta.workers,
    PRIMARY KEY (catalog, chunk_id, worker),
    FOREIGN KEY (catalog, chunk_id) REFERENCES qserv_meta.chunks ON DELETE CASCADE
);

CREATE TABLE qserv_meta.load_txns (
    id              bigserial PRIMARY KEY,
    catalog         text NOT NULL REFERENCES qserv_meta.catalogs ON DELETE CASCADE,
    table_name      text NOT NULL,
    state           text NOT NULL CHECK (state IN
                        ('staging', 'staged', 'publishing', 'published', 'aborted', 'failed')),
    files           text[] NOT NULL DEFAULT '{}',
    rows            bigint NOT NULL DEFAULT 0,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE qserv_meta.queries (
    id              bigserial PRIMARY KEY,
    owner           text NOT NULL DEFAULT '',
    lang            text NOT NULL,
    text            text NOT NULL,
    status          text NOT NULL CHECK (status IN
                        ('queued', 'running', 'completed', 'failed', 'killed')),
    chunks_total    integer NOT NULL DEFAULT 0,
    chunks_done     integer NOT NULL DEFAULT 0,
    rows            bigint,
    truncated       boolean NOT NULL DEFAULT false,
    error           text,
    submitted_at    timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);
CREATE INDEX queries_status_idx ON qserv_meta.queries (status);

-- Two-phase commits across the cluster: a row here, committed on the czar, is the
-- decision to commit the prepared transactions of that gid on the workers.
CREATE TABLE qserv_meta.twophase_decisions (
    gid             text PRIMARY KEY,
    decided_at      timestamptz NOT NULL DEFAULT now()
);
