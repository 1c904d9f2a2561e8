-- qserv_py czar metadata, version 3: query execution.

-- The database sessions a running query uses (its worker statements, and its merge on the
-- czar, under the name 'czar'), so that a kill from any process can cancel them. A
-- session also carries application_name 'qserv_py:q<id>' while it works for query <id>;
-- a kill cancels a recorded pid only while it still does, so a pooled session that has
-- moved on to another query is never hit. Rows go when the query finishes.
CREATE TABLE qserv_meta.query_backends (
    query_id        bigint NOT NULL REFERENCES qserv_meta.queries ON DELETE CASCADE,
    worker          text NOT NULL,
    pid             integer NOT NULL,
    PRIMARY KEY (query_id, worker, pid)
);

-- Merge tables (UNLOGGED, one per running query: qserv_result.q<id>), dropped when the
-- query ends.
CREATE SCHEMA IF NOT EXISTS qserv_result;
