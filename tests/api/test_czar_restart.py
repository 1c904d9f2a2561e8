"""The service across a restart of the czar database (``pg_ctl stop -m fast|immediate``,
then start): sync queries work again at once, queued async jobs complete, a job whose
query lost its czar session ends in ERROR and says why, and the runner's presence
session comes back by itself.

A small cluster of its own (a czar and one worker), as the tests restart its czar. A job
is held EXECUTING, deterministically, by a lock the test takes on the worker's table;
with one job thread, the jobs created after it stay QUEUED until it ends.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from qserv_py.api import jobs
from qserv_py.api.app import create_app
from qserv_py.api.jobs import Jobs
from qserv_py.cluster.db import connect
from qserv_py.cluster.local import LocalCluster
from qserv_py.cluster.osuser import run_as
from qserv_py.config import Settings, load_settings
from qserv_py.loaders.load import LoadOptions, load
from tests.api.test_jobs import UWS, create, phase_of, wait_final, wait_for
from tests.conftest import create_dp02_catalog, record_pids
from tests.loaders.conftest import read_table

COUNT = "SELECT COUNT(*) AS n FROM Object"


@pytest.fixture(scope="module")
def cluster(work_dir: Path, release: Path) -> Iterator[LocalCluster]:
    root = work_dir / "czar-restart-cluster"
    cluster = LocalCluster(root)
    cluster.init(load_settings({"cluster": root, "shared_buffers": "32MB", "workers": 1}))
    record_pids(cluster)
    try:
        create_dp02_catalog(cluster.spec(), "cz")
        load(cluster.spec(), "cz", "Object", [release / "Object"], LoadOptions(fixed_order=2))
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def expected(release: Path) -> list[str]:
    return ["n", str(read_table(release / "Object").num_rows)]


@pytest.fixture
def app_settings(cluster: LocalCluster, tmp_path: Path) -> Settings:
    return load_settings({"cluster": cluster.root}).model_copy(
        update=dict(default_catalog="cz", results_dir=tmp_path / "results", async_concurrency=1)
    )


def _czar_ctl(cluster: LocalCluster, *args: str) -> None:
    [czar] = [i for i in cluster.instances() if i.role == "czar"]
    result = run_as(
        cluster.user,
        [cluster.bindir / "pg_ctl", *args, "-D", cluster.datadir(czar), "-w", "-s"],
        cwd=cluster.root,
    )
    assert result.returncode == 0, result.stderr


def _start_czar(cluster: LocalCluster) -> None:
    cluster.start()
    record_pids(cluster)


@contextmanager
def _worker_locked(cluster: LocalCluster) -> Iterator[None]:
    """Queries of cz.Object wait on the worker until the block ends."""
    with connect(cluster.spec().workers[0]) as conn:
        conn.execute("LOCK TABLE cz.object IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


def _sync(api: TestClient) -> httpx.Response:
    return api.get("/tap/sync", params={"QUERY": COUNT, "FORMAT": "csv"})


def _result(api: TestClient, job_id: str) -> list[str]:
    return api.get(f"/tap/async/{job_id}/results/result").text.split()


def _ended_by_restart(api: TestClient, job_id: str, expected: list[str]) -> None:
    """The job that was executing when the czar went away: it lost its czar session or
    could not open one (ERROR, naming the czar) or had not needed it (COMPLETED, exact)."""
    doc = wait_final(api, job_id)
    phase = doc.findtext(f"{UWS}phase")
    if phase == "COMPLETED":
        assert _result(api, job_id) == expected
    else:
        assert phase == "ERROR"
        message = ET.fromstring(api.get(f"/tap/async/{job_id}/error").content)
        assert "czar" in ET.tostring(message, encoding="unicode")  # what failed, by name


def _running(api: TestClient, expected: list[str]) -> tuple[str, list[str]]:
    """A job held EXECUTING (the worker is locked) and two QUEUED behind it."""
    blocked = create(api, QUERY=COUNT, PHASE="RUN", RESPONSEFORMAT="csv")
    assert wait_for(lambda: phase_of(api, blocked) == "EXECUTING")
    queued = [create(api, QUERY=COUNT, PHASE="RUN", RESPONSEFORMAT="csv") for _ in range(2)]
    assert [phase_of(api, j) for j in queued] == ["QUEUED", "QUEUED"]
    return blocked, queued


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_queries_and_queued_jobs_go_on_after_a_czar_restart(
    cluster: LocalCluster, app_settings: Settings, expected: list[str], mode: str
) -> None:
    with TestClient(create_app(app_settings, cluster.spec())) as api:
        assert _sync(api).text.split() == expected
        with _worker_locked(cluster):
            blocked, queued = _running(api, expected)
            _czar_ctl(cluster, "stop", "-m", mode)
            _start_czar(cluster)
        response = _sync(api)  # the pooled sessions were those of the old server
        assert response.status_code == 200, response.text
        assert response.text.split() == expected
        for job_id in queued:
            assert wait_final(api, job_id).findtext(f"{UWS}phase") == "COMPLETED"
            assert _result(api, job_id) == expected
        _ended_by_restart(api, blocked, expected)
        after = create(api, QUERY=COUNT, PHASE="RUN", RESPONSEFORMAT="csv")
        assert wait_final(api, after).findtext(f"{UWS}phase") == "COMPLETED"


def test_jobs_wait_for_a_czar_that_is_down(
    cluster: LocalCluster,
    app_settings: Settings,
    expected: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The czar stays down while the executing job ends: the runner waits for it to
    record that end (and says so in its log), then runs the queued jobs."""
    caplog.set_level(logging.WARNING, logger="qserv_py.api.jobs")
    with TestClient(create_app(app_settings, cluster.spec())) as api:
        try:
            with _worker_locked(cluster):
                blocked, queued = _running(api, expected)
                _czar_ctl(cluster, "stop", "-m", "fast")
            waiting = f"waiting for the czar to record the end of job {blocked}"
            assert wait_for(lambda: any(waiting in r.getMessage() for r in caplog.records), 300)
        finally:
            _start_czar(cluster)
        _ended_by_restart(api, blocked, expected)
        for job_id in queued:
            assert wait_final(api, job_id).findtext(f"{UWS}phase") == "COMPLETED"
            assert _result(api, job_id) == expected


def test_presence_comes_back_and_no_runner_takes_over(
    cluster: LocalCluster, app_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after a czar restart another service process sweeps: it must not take the
    runner whose presence session the restart ended for gone; that session comes back."""
    monkeypatch.setattr(jobs, "PRESENCE_GRACE_S", 3600.0)  # "right after", however slow
    spec = cluster.spec()
    with (
        TestClient(create_app(app_settings, spec)) as api,
        TestClient(create_app(app_settings, spec)) as other,
    ):
        runner: Jobs = api.app.state.jobs  # type: ignore[attr-defined]
        queued, executing = create(api, QUERY=COUNT), create(api, QUERY=COUNT)
        with connect(spec.czar, autocommit=True) as czar:  # as if they were the runner's
            for job_id, phase in ((queued, "QUEUED"), (executing, "EXECUTING")):
                czar.execute(
                    "UPDATE qserv_meta.uws_jobs SET phase = %s, runner = %s WHERE id = %s",
                    (phase, runner.runner_id, job_id),
                )
        _czar_ctl(cluster, "stop", "-m", "fast")
        _start_czar(cluster)
        other.app.state.jobs.sweep()  # type: ignore[attr-defined]
        with connect(spec.czar, autocommit=True) as czar:
            rows = czar.execute(
                "SELECT id, phase, runner FROM qserv_meta.uws_jobs WHERE id = ANY(%s)",
                ([queued, executing],),
            ).fetchall()
        assert sorted(rows) == sorted(
            [(queued, "QUEUED", runner.runner_id), (executing, "EXECUTING", runner.runner_id)]
        )

        def present() -> bool:
            with connect(spec.czar, autocommit=True) as czar:
                row = czar.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                    (f"qserv_py:uws:{runner.runner_id}",),
                ).fetchone()
            return bool(row and row[0])

        assert wait_for(present, 30), "the runner's presence session did not come back"
        for job_id in (queued, executing):
            assert api.delete(f"/tap/async/{job_id}", follow_redirects=False).status_code == 303
