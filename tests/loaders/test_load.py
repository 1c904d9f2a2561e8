"""Bulk loading on the real cluster: placement, chunks, overlap, director index, checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from qserv_py.cli import main
from qserv_py.cluster.catalogs import create_catalog, drop_catalog
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.errors import CatalogError, LoadError, LoadInputError
from qserv_py.loaders.load import LoadOptions, load
from qserv_py.loaders.publish import abort
from qserv_py.loaders.txn import list_txns
from qserv_py.schema import default_catalog_path, parse_catalog
from qserv_py.schema.ddl import dirindex_table
from qserv_py.sky.healpix import ORDER, angular_separation, order_ipix, unit_vectors
from tests.loaders.conftest import as_int, read_table, worker_count, worker_rows

SMALL = LoadOptions(max_rows_per_chunk=150, min_order=2, max_order=8)


def _load_release(
    spec: ClusterSpec, catalog: str, release: Path, options: LoadOptions = SMALL
) -> None:
    for table in ("Object", "ForcedSource", "Source", "CcdVisit"):
        result = load(spec, catalog, table, [release / table], options)
        assert result.state == "published"


def test_release_end_to_end(
    spec: ClusterSpec, release: Path, make_catalog: Callable[[str], str]
) -> None:
    cat = make_catalog("ld_full")
    _load_release(spec, cat, release)
    objects = read_table(release / "Object")
    forced = read_table(release / "ForcedSource")
    # counts equal the input; replicated tables are on every worker
    assert worker_count(spec, f"{cat}.object") == objects.num_rows
    assert worker_count(spec, f"{cat}.forcedsource") == forced.num_rows
    assert worker_count(spec, f"{cat}.source") == read_table(release / "Source").num_rows
    assert worker_count(spec, f"{cat}.ccdvisit") == read_table(release / "CcdVisit").num_rows * len(
        spec.workers
    )
    # every row is in exactly one chunk: the ancestor of its spatial_index
    rows = worker_rows(spec, f"SELECT objectid, chunk_id, spatial_index FROM {cat}.object")
    ids, chunks, index = (as_int(list(c)) for c in zip(*rows, strict=True))
    assert len(np.unique(ids)) == len(ids) == objects.num_rows
    order, ipix = order_ipix(chunks)
    assert np.array_equal(index >> (2 * (ORDER - order)), ipix)
    # children sit in their object's chunk, with its spatial_index
    child = worker_rows(spec, f"SELECT objectid, chunk_id, spatial_index FROM {cat}.forcedsource")
    c_ids, c_chunks, c_index = (as_int(list(c)) for c in zip(*child, strict=True))
    where = np.searchsorted(ids[np.argsort(ids)], c_ids)
    by_id = np.argsort(ids)[where]
    assert np.array_equal(chunks[by_id], c_chunks) and np.array_equal(index[by_id], c_index)
    # the director index is complete and right
    with connect(spec.czar) as czar:
        stored = czar.execute(
            f"SELECT key, chunk_id FROM {dirindex_table(cat, 'Object')} ORDER BY key"
        ).fetchall()
    assert as_int([r[0] for r in stored]).tolist() == np.sort(ids).tolist()
    assert as_int([r[1] for r in stored]).tolist() == chunks[np.argsort(ids)].tolist()
    # adaptive chunks hold at most max_rows_per_chunk, unless at max_order
    per_chunk, counts = np.unique(chunks, return_counts=True)
    over = per_chunk[counts > SMALL.max_rows_per_chunk]
    assert all(order_ipix(c)[0] == SMALL.max_order for c in over)
    assert len(per_chunk) > 20
    # partitions are stored sorted by spatial_index
    unsorted = worker_rows(
        spec,
        "SELECT count(*) FROM (SELECT spatial_index - lag(spatial_index) OVER (PARTITION BY"
        f" tableoid ORDER BY ctid) AS step FROM {cat}.forcedsource) s WHERE step < 0",
    )
    assert sum(r[0] for r in unsorted) == 0
    # the czar's statistics agree
    assert main(["--cluster", str(spec.path), "catalog", "stats", cat]) == 0
    with connect(spec.czar) as czar:
        stats = dict(
            czar.execute(
                "SELECT table_name, sum(rows) FROM qserv_meta.chunk_stats WHERE catalog = %s"
                " GROUP BY 1",
                (cat,),
            ).fetchall()
        )
    assert stats["object"] == objects.num_rows and stats["forcedsource"] == forced.num_rows


def test_overlap_complete_against_brute_force(
    spec: ClusterSpec, release: Path, make_catalog: Callable[[str], str], tmp_path: Path
) -> None:
    """Every pair closer than the overlap but in different chunks is visible to both chunks."""
    from scipy.spatial import cKDTree

    cat = make_catalog("ld_overlap")
    # crowd pairs onto chunk edges: a dense clump, every object with a close companion
    objects = read_table(release / "Object")
    n = objects.num_rows
    rng = np.random.default_rng(5)
    ra = rng.normal(45.0, 1.0, n) % 360
    dec = np.clip(rng.normal(41.8, 1.0, n), -90, 90)  # around a base-pixel corner
    ra[1::2] = (ra[0::2] + rng.uniform(-0.012, 0.012, n // 2)) % 360
    dec[1::2] = dec[0::2] + rng.uniform(-0.012, 0.012, n // 2)
    objects = objects.set_column(1, "coord_ra", pa.array(ra)).set_column(
        2, "coord_dec", pa.array(dec)
    )
    (tmp_path / "Object").mkdir()
    pq.write_table(objects, tmp_path / "Object" / "o.parquet")
    load(
        spec,
        cat,
        "Object",
        [tmp_path / "Object"],
        LoadOptions(max_rows_per_chunk=15, min_order=3, max_order=10),
    )
    own = dict(worker_rows(spec, f"SELECT objectid, chunk_id FROM {cat}.object"))
    visible = set(worker_rows(spec, f"SELECT objectid, chunk_id FROM {cat}.object_overlap"))
    ids = objects.column("objectId").to_numpy()
    radius = 60 / 3600
    pairs = cKDTree(unit_vectors(ra, dec)).query_pairs(
        2 * np.sin(np.radians(radius) / 2), output_type="ndarray"
    )
    pairs = pairs[
        angular_separation(ra[pairs[:, 0]], dec[pairs[:, 0]], ra[pairs[:, 1]], dec[pairs[:, 1]])
        <= radius
    ]
    crossing = [(int(ids[i]), int(ids[j])) for i, j in pairs if own[ids[i]] != own[ids[j]]]
    assert len(crossing) > 100, "the test must exercise chunk edges"
    missing = [
        (a, b) for a, b in crossing if (a, own[b]) not in visible or (b, own[a]) not in visible
    ]
    assert not missing
    assert not any(own[i] == c for i, c in visible), "no row is overlap of its own chunk"
    # overlap rows live on the workers holding their chunk
    with connect(spec.czar) as czar:
        placed = set(
            czar.execute(
                "SELECT chunk_id, worker FROM qserv_meta.placement WHERE catalog = %s", (cat,)
            ).fetchall()
        )
    for worker in spec.workers:
        with connect(worker) as conn:
            for (chunk,) in conn.execute(f"SELECT DISTINCT chunk_id FROM {cat}.object_overlap"):
                assert (chunk, worker.name) in placed


def test_replication_two(
    spec: ClusterSpec, release: Path, make_catalog: Callable[[str], str]
) -> None:
    cat = make_catalog("ld_rep")
    options = LoadOptions(replication=2, max_rows_per_chunk=300, min_order=2, max_order=8)
    load(spec, cat, "Object", [release / "Object"], options)
    load(spec, cat, "ForcedSource", [release / "ForcedSource"], options)
    total = read_table(release / "Object").num_rows
    with connect(spec.czar) as czar:
        placement = czar.execute(
            "SELECT chunk_id, count(DISTINCT worker) FROM qserv_meta.placement WHERE catalog = %s"
            " GROUP BY 1",
            (cat,),
        ).fetchall()
    assert placement and all(n == 2 for _, n in placement)
    for worker in spec.workers:  # two workers: each holds every chunk
        with connect(worker) as conn:
            assert conn.execute(f"SELECT count(*) FROM {cat}.object").fetchone() == (total,)
            chunks = {
                r[0] for r in conn.execute(f"SELECT DISTINCT chunk_id FROM {cat}.forcedsource")
            }
            assert chunks <= {c for c, _ in placement}
    with pytest.raises(LoadError, match="replication 3 needs that many workers"):
        load(spec, cat, "Object", [release / "Object"], LoadOptions(replication=3))


def test_a_catalog_created_at_level_two_loads_two_copies(spec: ClusterSpec, release: Path) -> None:
    """``catalog create --replication 2``: a load without ``--replication`` places each
    chunk on two workers (the catalog's level); a level above the workers is refused."""
    name = "ld_level"
    text = default_catalog_path("dp02").read_text().replace("name: dp02", f"name: {name}", 1)
    with pytest.raises(CatalogError, match="replication 3: each chunk needs that many workers"):
        create_catalog(spec, parse_catalog(text, name), text, replication=3)
    create_catalog(spec, parse_catalog(text, name), text, replication=2)
    try:
        options = LoadOptions(max_rows_per_chunk=300, min_order=2, max_order=8)
        load(spec, name, "Object", [release / "Object"], options)
        with connect(spec.czar) as czar:
            copies = czar.execute(
                "SELECT chunk_id, count(DISTINCT worker) FROM qserv_meta.placement"
                " WHERE catalog = %s GROUP BY 1",
                (name,),
            ).fetchall()
            level = czar.execute(
                "SELECT replication FROM qserv_meta.catalogs WHERE name = %s", (name,)
            ).fetchone()
        assert copies and all(n == 2 for _, n in copies) and level == (2,)
    finally:
        drop_catalog(spec, name)


def test_stage_then_publish_or_abort(
    spec: ClusterSpec,
    release: Path,
    make_catalog: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    cat = make_catalog("ld_txn")
    staged = load(spec, cat, "Object", [release / "Object"], LoadOptions(publish=False))
    assert staged.state == "staged" and staged.rows == 4_000
    assert worker_count(spec, f"{cat}.object") == 0, "queries see nothing before publish"
    with connect(spec.czar) as czar:
        assert czar.execute(f"SELECT count(*) FROM {dirindex_table(cat, 'Object')}").fetchone() == (
            0,
        )
    assert main(["--cluster", str(spec.path), "txn", "list", cat]) == 0
    assert f"{staged.txn:>5} staged" in capsys.readouterr().out
    assert main(["--cluster", str(spec.path), "txn", "publish", str(staged.txn)]) == 0
    assert worker_count(spec, f"{cat}.object") == 4_000
    # a staged load of children, aborted: nothing stays behind
    child = load(spec, cat, "ForcedSource", [release / "ForcedSource"], LoadOptions(publish=False))
    assert main(["--cluster", str(spec.path), "txn", "abort", str(child.txn)]) == 0
    assert worker_count(spec, f"{cat}.forcedsource") == 0
    assert _staging_tables(spec, child.txn) == 0
    assert {t.id: t.state for t in list_txns(spec, cat)}[child.txn] == "aborted"
    with pytest.raises(LoadError, match="is aborted; it cannot be published"):
        from qserv_py.loaders.load import resume

        resume(spec, child.txn, force_publish=True)


def test_aborted_first_load_forgets_its_layout(
    spec: ClusterSpec, release: Path, make_catalog: Callable[[str], str]
) -> None:
    cat = make_catalog("ld_relayout")
    first = load(
        spec, cat, "Object", [release / "Object"], LoadOptions(publish=False, fixed_order=2)
    )
    abort(spec, first.txn)
    load(spec, cat, "Object", [release / "Object"], LoadOptions(fixed_order=3))
    with connect(spec.czar) as czar:
        assert czar.execute(
            "SELECT count(*) FROM qserv_meta.chunks WHERE catalog = %s", (cat,)
        ).fetchone() == (768,)


def _staging_tables(spec: ClusterSpec, txn: int) -> int:
    total = 0
    for inst in spec.instances:
        with connect(inst) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'qserv_stage' AND c.relname ~ %s",
                (rf"^s{txn}(_|$)",),
            ).fetchone()
            total += row[0] if row else 0
    return total


def test_second_load_adds_rows(
    spec: ClusterSpec, release: Path, make_catalog: Callable[[str], str], tmp_path: Path
) -> None:
    """An append (director and child) equals its input: every row once, in the chunk of
    its position, in the director index; the appended keys interleave the live ones (the
    duplicate checks join them, issue 12)."""
    cat = make_catalog("ld_twice")
    objects = read_table(release / "Object")
    forced = read_table(release / "ForcedSource")
    odd = pc.equal(pc.bit_wise_and(objects.column("objectId"), 1), 1)
    parts = {
        "a": (objects.filter(pc.invert(odd)), forced.slice(0, forced.num_rows // 2)),
        "b": (objects.filter(odd), forced.slice(forced.num_rows // 2)),
    }
    for name, (obj, fs) in parts.items():
        (tmp_path / name).mkdir()
        pq.write_table(obj, tmp_path / name / "o.parquet")
        pq.write_table(fs, tmp_path / name / "f.parquet")
    for name in parts:  # both halves of Object first: a child needs its director rows
        load(spec, cat, "Object", [tmp_path / name / "o.parquet"], SMALL)
    for name in parts:
        load(spec, cat, "ForcedSource", [tmp_path / name / "f.parquet"], SMALL)
    got = sorted(worker_rows(spec, f"SELECT objectid, coord_ra, coord_dec FROM {cat}.object"))
    assert got == _rows(objects, "objectId", "coord_ra", "coord_dec")
    got_fs = sorted(worker_rows(spec, f"SELECT forcedsourceid, objectid FROM {cat}.forcedsource"))
    assert got_fs == _rows(forced, "forcedSourceId", "objectId")
    placed = sorted(worker_rows(spec, f"SELECT objectid, chunk_id FROM {cat}.object"))
    with connect(spec.czar) as czar:
        index = czar.execute(
            f"SELECT key, chunk_id FROM {dirindex_table(cat, 'Object')} ORDER BY key"
        ).fetchall()
    assert index == placed
    # a chunk rebuilt holds one sorted run, a chunk appended in place (it held more rows
    # than the append added) one run per load
    runs = worker_rows(
        spec,
        "SELECT tableoid, 1 + count(*) FILTER (WHERE step < 0) FROM (SELECT tableoid,"
        " spatial_index - lag(spatial_index) OVER (PARTITION BY tableoid ORDER BY ctid) AS step"
        f" FROM {cat}.object) s GROUP BY tableoid",
    )
    assert {n for _, n in runs} <= {1, 2}


def _rows(table: pa.Table, *columns: str) -> list[tuple[object, ...]]:
    return sorted(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


def test_duplicate_keys_are_refused(
    spec: ClusterSpec, release: Path, make_catalog: Callable[[str], str], tmp_path: Path
) -> None:
    cat = make_catalog("ld_dup")
    load(spec, cat, "Object", [release / "Object"], SMALL)
    with pytest.raises(LoadError, match=r"objectId values occur already in the catalog \(e\.g\. "):
        load(spec, cat, "Object", [release / "Object"], SMALL)
    # the same rows twice within one load
    objects = read_table(release / "Object").slice(0, 10)
    for name in ("x", "y"):
        pq.write_table(
            objects.set_column(0, "objectId", pa.array(np.arange(10) + 10**15)),
            tmp_path / f"{name}.parquet",
        )
    with pytest.raises(LoadError, match="occur more than once in this load"):
        load(spec, cat, "Object", [tmp_path / "x.parquet", tmp_path / "y.parquet"], SMALL)
    # children: loading the same forced sources twice
    load(spec, cat, "ForcedSource", [release / "ForcedSource"], SMALL)
    with pytest.raises(
        LoadError,
        match=r"ForcedSource\.forcedSourceId values occur already in the catalog \(e\.g\. 3",
    ):
        load(spec, cat, "ForcedSource", [release / "ForcedSource"], SMALL)
    # a replicated table: its primary key, met in the publish's two-phase commit
    load(spec, cat, "CcdVisit", [release / "CcdVisit"], SMALL)
    with pytest.raises(LoadError, match=r"CcdVisit\.ccdVisitId values are already in the table"):
        load(spec, cat, "CcdVisit", [release / "CcdVisit"], SMALL)
    assert worker_count(spec, f"{cat}.ccdvisit") == read_table(release / "CcdVisit").num_rows * len(
        spec.workers
    )
    assert worker_count(spec, f"{cat}.object") == 4_000
    assert (
        worker_count(spec, f"{cat}.forcedsource") == read_table(release / "ForcedSource").num_rows
    )
    failed = [t for t in list_txns(spec, cat) if t.state == "failed"]
    assert len(failed) == 4
    for t in failed:
        abort(spec, t.id)
        assert _staging_tables(spec, t.id) == 0


def test_unknown_director_keys(
    spec: ClusterSpec, release: Path, make_catalog: Callable[[str], str], tmp_path: Path
) -> None:
    cat = make_catalog("ld_orphans")
    load(spec, cat, "Object", [release / "Object"], SMALL)
    forced = read_table(release / "ForcedSource")
    ids = forced.column("objectId").to_numpy().copy()
    ids[::100] += 10**17
    pq.write_table(forced.set_column(1, "objectId", pa.array(ids)), tmp_path / "f.parquet")
    bad = int(np.ceil(len(ids) / 100))
    with pytest.raises(
        LoadError,
        match=rf"{bad} rows of ForcedSource have a objectId that is not in Object \(e\.g\. 1000",
    ):
        load(spec, cat, "ForcedSource", [tmp_path / "f.parquet"], SMALL)
    assert worker_count(spec, f"{cat}.forcedsource") == 0


def test_children_need_their_director(
    spec: ClusterSpec, release: Path, make_catalog: Callable[[str], str]
) -> None:
    cat = make_catalog("ld_nodirector")
    with pytest.raises(LoadError, match="load its director table Object before ForcedSource"):
        load(spec, cat, "ForcedSource", [release / "ForcedSource"])
    with pytest.raises(LoadError, match="has no table Galaxy; its tables: Object, Source"):
        load(spec, cat, "Galaxy", [release / "Object"])


def _bad(tmp_path: Path, table: pa.Table, name: str = "bad.parquet") -> Path:
    path = tmp_path / name
    pq.write_table(table, path)
    return path


def _with(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, values)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop_columns(["coord_ra"]), r"column coord_ra \(non-nullable\) is missing"),
        (
            lambda t: t.append_column("colour", pa.array(["red"] * t.num_rows)),
            r"column colour is not in table Object.*--ignore-extra",
        ),
        (
            lambda t: t.append_column("chunk_id", pa.array([1] * t.num_rows)),
            "chunk_id is computed by the loader",
        ),
        (
            lambda t: _with(t, "coord_dec", pc.cast(t.column("coord_dec"), pa.string())),
            "column coord_dec is string, which cannot be converted to double",
        ),
        (
            lambda t: _with(
                t,
                "objectId",
                pa.array(
                    [None if i == 7 else v for i, v in enumerate(t.column("objectId").to_pylist())],
                    pa.int64(),
                ),
            ),
            "column objectId, row 7: NULL in non-nullable column objectId",
        ),
        (
            lambda t: _with(
                t,
                "coord_dec",
                pa.array(
                    [95.0 if i == 3 else v for i, v in enumerate(t.column("coord_dec").to_pylist())]
                ),
            ),
            r"column coord_dec, row 3: position 95\.0 is not in \[-90, 90\]",
        ),
        (
            lambda t: _with(
                t,
                "coord_ra",
                pa.array(
                    [
                        float("nan") if i == 11 else v
                        for i, v in enumerate(t.column("coord_ra").to_pylist())
                    ]
                ),
            ),
            r"column coord_ra, row 11: position nan is not in \[0, 360\]",
        ),
        (
            lambda t: t.rename_columns(
                [n.upper() if n == "tract" else n for n in t.column_names]
            ).append_column("Tract", t.column("tract")),
            "differ only in case",
        ),
    ],
)
def test_bad_input_is_refused_before_any_write(
    spec: ClusterSpec,
    release: Path,
    make_catalog: Callable[[str], str],
    tmp_path: Path,
    change: Callable[[pa.Table], pa.Table],
    message: str,
) -> None:
    cat = make_catalog("ld_bad")
    path = _bad(tmp_path, change(read_table(release / "Object").slice(0, 50)))
    with pytest.raises(LoadInputError, match=message) as err:
        load(spec, cat, "Object", [path])
    assert str(path) in str(err.value)
    assert list_txns(spec, cat) == [], "nothing was started"
    with connect(spec.czar) as czar:
        assert czar.execute(
            "SELECT count(*) FROM qserv_meta.chunks WHERE catalog = %s", (cat,)
        ).fetchone() == (0,)


def test_ignore_extra_and_missing_nullable(
    spec: ClusterSpec, release: Path, make_catalog: Callable[[str], str], tmp_path: Path
) -> None:
    cat = make_catalog("ld_lenient")
    table = (
        read_table(release / "Object")
        .slice(0, 100)
        .append_column("colour", pa.array(["red"] * 100))
    )
    table = table.drop_columns(["refBand"])
    path = _bad(tmp_path, table.rename_columns([n.upper() for n in table.column_names]))
    load(spec, cat, "Object", [path], LoadOptions(ignore_extra=True))
    assert worker_count(spec, f"{cat}.object") == 100
    assert (
        sum(
            r[0]
            for r in worker_rows(spec, f"SELECT count(*) FROM {cat}.object WHERE refband IS NULL")
        )
        == 100
    )


def test_missing_files(
    spec: ClusterSpec, make_catalog: Callable[[str], str], tmp_path: Path
) -> None:
    cat = make_catalog("ld_nofiles")
    with pytest.raises(LoadInputError, match="no such file or directory"):
        load(spec, cat, "Object", [tmp_path / "nope.parquet"])
    with pytest.raises(LoadInputError, match=r"holds no \*\.parquet files"):
        load(spec, cat, "Object", [tmp_path])
    with pytest.raises(LoadInputError, match="no file matches this pattern"):
        load(spec, cat, "Object", [str(tmp_path / "*.parquet")])
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(LoadInputError, match="not a readable Parquet file"):
        load(spec, cat, "Object", [tmp_path / "junk.parquet"])
