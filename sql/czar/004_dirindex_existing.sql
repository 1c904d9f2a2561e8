-- qserv_py czar metadata, version 4: director indexes for catalogs created before
-- version 2 (which added them at catalog creation). Names as
-- qserv_py.schema.ddl.dirindex_table gives them (catalog__table; such old names are short).

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT catalog, name FROM qserv_meta.tables WHERE kind = 'director' LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS qserv_dirindex.%I (key bigint PRIMARY KEY,'
            ' chunk_id bigint NOT NULL, spatial_index bigint NOT NULL)',
            r.catalog || '__' || r.name);
    END LOOP;
END $$;
