"""Loads and queries on Citus: the query release loaded into catalog ``qt`` of the Citus
cluster (distributed and reference tables), and a sample of the differential corpus, one
or more queries of each shape, compared with the oracle (the whole corpus with
``QSERV_CITUS_CORPUS=all``)."""

from __future__ import annotations

import os

import psycopg
import pyarrow as pa
import pytest

from qserv_py.client import Client
from qserv_py.cluster.db import connect as db_connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import QueryError
from tests.catalogs import CATALOG
from tests.query.test_corpus import CASES, Case, compare
from tests.query.test_uploads import ARCSEC, check, edge_targets, matching
from tests.query.test_uploads import objects as objects  # the fixture (the oracle's objects)

#: one or more queries of each shape (the whole corpus runs on native workers)
SHAPES = (
    "001_count_objects",  # whole-sky aggregate
    "004_group_by_band",  # grouped aggregate of a child
    "009_cone_contains",  # cone
    "013_cone_ra_wrap",
    "012_cone_rows_ordered",
    "022_objectid_lookup",  # director index lookup
    "023_objectid_in",
    "024_light_curve",  # director ⋈ child
    "027_replicated_join",  # partitioned ⋈ reference table
    "029_near_neighbour",  # director ⋈ director, overlap
    "031_refuse_radius_beyond_overlap",
    "174_left_join_director_child",
)
#: QSERV_CITUS_CORPUS=all runs the whole corpus (minutes) instead of the sample
WHOLE = os.environ.get("QSERV_CITUS_CORPUS") == "all"
SAMPLE = CASES if WHOLE else [c for c in CASES if c.name in SHAPES]


def test_sample_has_every_shape() -> None:
    names = {c.name for c in SAMPLE}
    assert names >= set(SHAPES) and (WHOLE or len(names) == len(SHAPES))


def test_loaded_rows_are_in_the_shards(citus_client: Client, citus_spec: ClusterSpec) -> None:
    with db_connect(citus_spec.coordinator, autocommit=True) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {CATALOG}.object").fetchone()
        placed = conn.execute(
            "SELECT count(DISTINCT nodeport) FROM pg_dist_shard_placement p"
            " JOIN pg_dist_shard s USING (shardid)"
            f" WHERE s.logicalrelid = '{CATALOG}.object'::regclass"
        ).fetchone()
        staging = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'qserv_stage'"
        ).fetchone()
    assert rows == (3_000,)
    assert placed == (2,)  # shards on both worker nodes
    assert staging == (0,)  # staging dropped after the publish


@pytest.mark.parametrize("case", SAMPLE, ids=[c.name for c in SAMPLE])
def test_matches_oracle_on_citus(
    case: Case, citus_client: Client, oracle: psycopg.Connection
) -> None:
    if case.refuse:
        with pytest.raises(QueryError) as err:
            citus_client.query(case.text, case.lang)
        assert case.refuse in str(err.value)
        return
    result = citus_client.query(case.text, case.lang)
    got = [tuple(row.values()) for row in result.to_pylist()]
    plan = citus_client.plan(case.text, case.lang)
    want = oracle.cursor(binary=True).execute(plan.oracle_sql).fetchall()
    if case.count_only:
        assert len(got) == len(want)
        return
    compare(got, want, ordered=case.ordered)


def test_cross_match_of_an_upload_on_citus(
    citus_client: Client, oracle: psycopg.Connection, objects: pa.Table
) -> None:
    """A TAP upload (a local table on the coordinator) cross-matched with the distributed
    Object table, targets placed at chunk edges: the oracle's rows."""
    targets = edge_targets(citus_client, objects, 10 * ARCSEC, seed=3)
    text = (
        "SELECT t.id, t.label, o.objectId FROM TAP_UPLOAD.t AS t JOIN Object AS o "
        "ON CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(t.ra, t.dec, 10.0 / 3600)) = 1"
    )
    rows = check(citus_client, oracle, text, {"t": targets}, xmatch=True)
    assert len(rows) >= matching(targets)
