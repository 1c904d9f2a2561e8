-- qserv_py czar metadata, version 10: match tables (qserv:kind match, relating two
-- director tables by their keys; see qserv_py/loaders/matches.py and docs/qserv-sql.md).

ALTER TABLE qserv_meta.tables DROP CONSTRAINT tables_kind_check;
ALTER TABLE qserv_meta.tables ADD CONSTRAINT tables_kind_check
    CHECK (kind IN ('director', 'child', 'replicated', 'match'));
