-- qserv_py's own tables on the czar and every worker (qserv_py.cluster.metadata.install_common).
-- Re-running this file is safe.

-- The checksums taken of chunk partitions (qserv_py.ops.checksums): a partition's row count
-- and the sum of its rows' 64-bit hashes, kept while its rows stay as they were.
CREATE TABLE IF NOT EXISTS qserv.checksums (
    relation oid NOT NULL,        -- the partition (pg_class.oid)
    hashed text NOT NULL,         -- md5 of the row hash's SQL (its columns, in order)
    rows bigint NOT NULL,
    checksum numeric NOT NULL,    -- the sum of the rows' hashes
    taken timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (relation, hashed)
);
