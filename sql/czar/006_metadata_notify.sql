-- qserv_py czar metadata, version 6: notifications of metadata changes.

-- A client plans against what it read of the catalogs, their layouts, placement and row
-- counts (qserv_py.query.context), and of the loads. It LISTENs on channel qserv_meta and
-- re-reads its fingerprint of them only after a notification (qserv_py.client), so every
-- statement that changes one of these tables notifies, once per transaction, when it
-- commits.
CREATE FUNCTION qserv_meta.notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('qserv_meta', '');
    RETURN NULL;
END $$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['catalogs', 'tables', 'columns', 'chunks', 'chunk_stats',
                             'placement', 'load_txns'] LOOP
        EXECUTE format('CREATE TRIGGER notify_change AFTER INSERT OR UPDATE OR DELETE OR '
                       'TRUNCATE ON qserv_meta.%I FOR EACH STATEMENT '
                       'EXECUTE FUNCTION qserv_meta.notify_change()', t);
    END LOOP;
END $$;
