"""TAP async (UWS 1.1) on the session cluster: the HTTP resources, the runner, abort and
kill of worker statements, persistence across a restart, destruction, and pyvo."""

from __future__ import annotations

import io
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
import pyvo
from astropy.io.votable import parse_single_table
from fastapi.testclient import TestClient
from pyvo.io.uws import parse_job, parse_job_list

from qserv_py.api.app import create_app
from qserv_py.api.jobs import STOPPED, Jobs
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings
from tests.api.conftest import Served
from tests.exec.test_dispatch import busy_sessions

UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"
XLINK = "{http://www.w3.org/1999/xlink}"
FINAL = ("COMPLETED", "ERROR", "ABORTED")
COUNT = "SELECT COUNT(*) AS n FROM Object"
#: a query of a minute or more (9 × 540³ rows counted on one worker); the tests that run
#: it abort or stop it, and bound it with LONG as its execution duration
SLOW = (
    "SELECT COUNT(*) AS n FROM CcdVisit c1, CcdVisit c2, CcdVisit c3, CcdVisit c4"
    " WHERE c4.visitId = 200000"
)
LONG = "120"


# --- helpers -------------------------------------------------------------------------------


def create(api: httpx.Client, **params: str) -> str:
    """POST a new job; its id (the 303 Location is checked)."""
    response = api.post("/tap/async", data=params, follow_redirects=False)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("http") and "/tap/async/" in location
    return location.rsplit("/", 1)[1]


def job_xml(api: httpx.Client, job_id: str, **query: str) -> ET.Element:
    response = api.get(f"/tap/async/{job_id}", params=query)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    return ET.fromstring(response.content)


def phase_of(api: httpx.Client, job_id: str) -> str:
    response = api.get(f"/tap/async/{job_id}/phase")
    assert response.status_code == 200, response.text
    return response.text


def wait_final(api: httpx.Client, job_id: str, limit_s: float = 120) -> ET.Element:
    deadline = time.monotonic() + limit_s
    while True:
        doc = job_xml(api, job_id, WAIT="10")
        if doc.findtext(f"{UWS}phase") in FINAL or time.monotonic() > deadline:
            return doc
        time.sleep(0.05)


def wait_for(check, limit_s: float = 30, step: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def engine_queries(spec: ClusterSpec, job_id: str) -> list[tuple[int, str]]:
    with connect(spec.czar, autocommit=True) as czar:
        rows = czar.execute(
            "SELECT id, status FROM qserv_meta.queries WHERE owner = %s ORDER BY id",
            (f"uws:{job_id}",),
        ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def dali_error(response: object) -> str:
    """The message of a DALI error VOTable."""
    content = response.content  # type: ignore[attr-defined]
    root = ET.fromstring(content)
    info = next(
        e for e in root.iter() if e.tag.endswith("INFO") and e.get("name") == "QUERY_STATUS"
    )
    assert info.get("value") == "ERROR"
    return info.text or ""


@pytest.fixture(scope="module")
def expected_count(api: TestClient) -> int:
    response = api.get("/tap/sync", params={"QUERY": COUNT, "RESPONSEFORMAT": "csv"})
    assert response.status_code == 200, response.text
    return int(response.text.splitlines()[1])


@pytest.fixture
def czar(spec: ClusterSpec) -> Iterator[psycopg.Connection]:
    with connect(spec.czar, autocommit=True) as conn:
        yield conn


# --- creating, running, results ------------------------------------------------------------


def test_create_answers_303_to_a_pending_job(api: TestClient) -> None:
    job_id = create(api, query=COUNT, Lang="ADQL", RUNID="mine", maxrec="10")
    doc = job_xml(api, job_id)
    assert doc.tag == f"{UWS}job" and doc.get("version") == "1.1"
    assert doc.findtext(f"{UWS}jobId") == job_id
    assert doc.findtext(f"{UWS}phase") == "PENDING"
    assert doc.findtext(f"{UWS}runId") == "mine"
    owner = doc.find(f"{UWS}ownerId")
    assert owner is not None and owner.get("{http://www.w3.org/2001/XMLSchema-instance}nil")
    params = {p.get("id"): p.text for p in doc.iter(f"{UWS}parameter")}
    assert params == {"query": COUNT, "lang": "ADQL", "maxrec": "10"}
    # pyvo reads it too
    summary = parse_job(io.BytesIO(api.get(f"/tap/async/{job_id}").content))
    assert summary.jobid == job_id and summary.phase == "PENDING"
    assert summary.executionduration.value == 3600
    assert phase_of(api, job_id) == "PENDING"
    assert api.get(f"/tap/async/{job_id}/owner").text == ""
    assert api.get(f"/tap/async/{job_id}/quote").status_code == 200

    soon = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    timed = create(api, QUERY=COUNT, EXECUTIONDURATION="60", DESTRUCTION=soon.isoformat())
    assert api.get(f"/tap/async/{timed}/executionduration").text == "60"
    assert datetime.fromisoformat(api.get(f"/tap/async/{timed}/destruction").text) == soon
    params = {p.get("id") for p in job_xml(api, timed).iter(f"{UWS}parameter")}
    assert params == {"query"}  # the job's attributes are not among its parameters


def test_run_then_wait_then_fetch_the_result(api: TestClient, expected_count: int) -> None:
    job_id = create(api, QUERY=COUNT)
    response = api.post(f"/tap/async/{job_id}/phase", data={"phase": "RUN"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].endswith(f"/tap/async/{job_id}")
    doc = wait_final(api, job_id)
    assert doc.findtext(f"{UWS}phase") == "COMPLETED", ET.tostring(doc)
    assert doc.findtext(f"{UWS}startTime") and doc.findtext(f"{UWS}endTime")
    result = doc.find(f"{UWS}results/{UWS}result")
    assert result is not None and result.get("id") == "result"
    href = result.get(f"{XLINK}href")
    assert href is not None and href.endswith(f"/tap/async/{job_id}/results/result")
    assert result.get("mime-type", "").startswith("application/x-votable+xml")
    info = doc.find(f"{UWS}jobInfo")
    assert info is not None and info.findtext("rows") == "1"
    assert info.findtext("overflow") == "false"

    listing = ET.fromstring(api.get(f"/tap/async/{job_id}/results").content)
    assert [r.get(f"{XLINK}href") for r in listing.iter(f"{UWS}result")] == [href]
    fetched = api.get(f"/tap/async/{job_id}/results/result")
    assert fetched.status_code == 200
    assert fetched.headers["content-type"].startswith("application/x-votable+xml")
    table = parse_single_table(io.BytesIO(fetched.content)).to_table()
    assert int(table["n"][0]) == expected_count


def test_phase_run_in_the_creating_post(api: TestClient, expected_count: int) -> None:
    job_id = create(api, QUERY=COUNT, PHASE="run", RESPONSEFORMAT="csv")
    assert phase_of(api, job_id) in ("QUEUED", "EXECUTING", "COMPLETED")
    assert wait_final(api, job_id).findtext(f"{UWS}phase") == "COMPLETED"
    fetched = api.get(f"/tap/async/{job_id}/results/result")
    assert fetched.headers["content-type"].startswith("text/csv")
    assert fetched.text.splitlines() == ["n", str(expected_count)]


def test_maxrec_overflow_is_recorded(api: TestClient) -> None:
    job_id = create(api, QUERY="SELECT objectId FROM Object", MAXREC="7", PHASE="RUN")
    doc = wait_final(api, job_id)
    assert doc.findtext(f"{UWS}phase") == "COMPLETED"
    info = doc.find(f"{UWS}jobInfo")
    assert info is not None
    assert (info.findtext("rows"), info.findtext("overflow")) == ("7", "true")
    fetched = api.get(f"/tap/async/{job_id}/results/result")
    assert len(parse_single_table(io.BytesIO(fetched.content)).array) == 7
    assert b'value="OVERFLOW"' in fetched.content


def test_parameters_change_while_pending_only(api: TestClient, expected_count: int) -> None:
    job_id = create(api, LANG="ADQL")  # no query yet
    response = api.post(
        f"/tap/async/{job_id}/parameters",
        data={"QUERY": COUNT, "responseformat": "csv"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    parameters = ET.fromstring(api.get(f"/tap/async/{job_id}/parameters").content)
    assert parameters.tag == f"{UWS}parameters"
    assert {p.get("id"): p.text for p in parameters} == {
        "lang": "ADQL",
        "query": COUNT,
        "responseformat": "csv",
    }
    api.post(f"/tap/async/{job_id}/phase", data={"PHASE": "RUN"})
    assert wait_final(api, job_id).findtext(f"{UWS}phase") == "COMPLETED"
    assert api.get(f"/tap/async/{job_id}/results/result").text.split() == ["n", str(expected_count)]
    late = api.post(f"/tap/async/{job_id}/parameters", data={"QUERY": "SELECT 1"})
    assert late.status_code == 409
    assert "PENDING" in dali_error(late)
    again = api.post(f"/tap/async/{job_id}/phase", data={"PHASE": "RUN"})
    assert again.status_code == 409 and "new job" in dali_error(again)


def test_a_job_without_query_fails_when_run(api: TestClient) -> None:
    job_id = create(api, PHASE="RUN")
    doc = wait_final(api, job_id)
    assert doc.findtext(f"{UWS}phase") == "ERROR"
    assert "QUERY is missing" in (doc.findtext(f"{UWS}errorSummary/{UWS}message") or "")


def test_a_bad_query_ends_in_error_with_its_message(api: TestClient) -> None:
    job_id = create(api, QUERY="SELECT * FROM Nope", PHASE="RUN")
    doc = wait_final(api, job_id)
    assert doc.findtext(f"{UWS}phase") == "ERROR"
    summary = doc.find(f"{UWS}errorSummary")
    assert summary is not None
    assert summary.get("type") == "fatal" and summary.get("hasDetail") == "true"
    assert "nope" in (summary.findtext(f"{UWS}message") or "").lower()
    error = api.get(f"/tap/async/{job_id}/error")
    assert error.status_code == 200
    assert error.headers["content-type"].startswith("application/x-votable+xml")
    assert "nope" in dali_error(error).lower()
    assert list(ET.fromstring(api.get(f"/tap/async/{job_id}/results").content)) == []
    missing = api.get(f"/tap/async/{job_id}/results/result")
    assert missing.status_code == 404 and "ERROR" in dali_error(missing)


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"LANG": "COBOL"}, "LANG"),
        ({"MAXREC": "many"}, "MAXREC"),
        ({"RESPONSEFORMAT": "image/gif"}, "image/gif"),
        ({"REQUEST": "getCaps"}, "REQUEST"),
        ({"UPLOAD": "t,param:nothere"}, "nothere"),
    ],
)
def test_bad_dali_parameters_make_a_job_that_ends_in_error(
    api: TestClient, params: dict[str, str], said: str
) -> None:
    """TAP 1.1: a job with a bad query is created (303), then ends in ERROR with its
    message in the job document and at /error (taplint checks it with LANG=<unknown>)."""
    job_id = create(api, QUERY=COUNT, PHASE="RUN", **params)
    doc = wait_final(api, job_id)
    assert doc.findtext(f"{UWS}phase") == "ERROR"
    assert said in (doc.findtext(f"{UWS}errorSummary/{UWS}message") or "")
    assert said in dali_error(api.get(f"/tap/async/{job_id}/error"))


# --- WAIT and the job list -----------------------------------------------------------------


def test_wait_blocks_while_active_and_returns_on_change(api: TestClient) -> None:
    job_id = create(api, QUERY=COUNT)
    started = time.monotonic()
    assert job_xml(api, job_id, WAIT="1").findtext(f"{UWS}phase") == "PENDING"
    assert time.monotonic() - started >= 0.9  # PENDING is active: it blocked
    started = time.monotonic()
    doc = job_xml(api, job_id, WAIT="30", PHASE="QUEUED")  # differs from PHASE: at once
    assert doc.findtext(f"{UWS}phase") == "PENDING"
    assert time.monotonic() - started < 10
    api.post(f"/tap/async/{job_id}/phase", data={"PHASE": "RUN"})
    assert wait_final(api, job_id).findtext(f"{UWS}phase") == "COMPLETED"
    started = time.monotonic()
    assert job_xml(api, job_id, WAIT="-1").findtext(f"{UWS}phase") == "COMPLETED"
    assert time.monotonic() - started < 10  # a finished job does not block


def test_job_list_and_its_filters(api: TestClient) -> None:
    before = create(api, QUERY=COUNT)
    time.sleep(0.01)
    first = create(api, QUERY=COUNT, RUNID="listed")
    time.sleep(0.01)
    second = create(api, QUERY=COUNT, PHASE="RUN")
    wait_final(api, second)
    time.sleep(0.01)
    third = create(api, QUERY=COUNT)

    def listed(**query: object) -> list[ET.Element]:
        response = api.get("/tap/async", params=query)
        assert response.status_code == 200, response.text
        root = ET.fromstring(response.content)
        assert root.tag == f"{UWS}jobs" and root.get("version") == "1.1"
        return list(root.iter(f"{UWS}jobref"))

    refs = {r.get("id"): r for r in listed()}
    assert {before, first, second, third} <= set(refs)
    assert refs[first].findtext(f"{UWS}runId") == "listed"
    assert refs[first].get(f"{XLINK}href", "").endswith(f"/tap/async/{first}")
    assert refs[second].findtext(f"{UWS}phase") == "COMPLETED"
    assert refs[first].findtext(f"{UWS}creationTime")

    pending = {r.get("id") for r in listed(PHASE="PENDING")}
    assert {before, first, third} <= pending and second not in pending
    both = {r.get("id") for r in listed(PHASE=["PENDING", "COMPLETED"])}
    assert {before, first, second, third} <= both
    assert all(r.findtext(f"{UWS}phase") == "COMPLETED" for r in listed(PHASE="COMPLETED"))

    after = refs[first].findtext(f"{UWS}creationTime")
    newer = [r.get("id") for r in listed(AFTER=after)]
    assert second in newer and third in newer and before not in newer

    last = listed(LAST=2)
    assert [r.get("id") for r in last] == [third, second]  # most recent first
    times = [r.findtext(f"{UWS}creationTime") or "" for r in listed(LAST=50)]
    assert times == sorted(times, reverse=True)
    assert [r.get("id") for r in listed(LAST=1, PHASE="COMPLETED")] == [second]
    # pyvo reads the list
    jobs = parse_job_list(io.BytesIO(api.get("/tap/async", params={"LAST": 3}).content))
    assert [j.jobid for j in jobs] == [third, second, first]


def test_wrong_values_get_clear_4xx_answers(api: TestClient) -> None:
    job_id = create(api, QUERY=COUNT)
    cases = [
        (api.post(f"/tap/async/{job_id}/phase", data={"PHASE": "GO"}), 400, "PHASE='GO'"),
        (api.post(f"/tap/async/{job_id}/phase", data={}), 400, "PHASE is missing"),
        (api.post("/tap/async", data={"QUERY": COUNT, "PHASE": "ABORT"}), 400, "PHASE=RUN"),
        (
            api.post(f"/tap/async/{job_id}/executionduration", data={"EXECUTIONDURATION": "x"}),
            400,
            "EXECUTIONDURATION",
        ),
        (
            api.post(f"/tap/async/{job_id}/executionduration", data={"EXECUTIONDURATION": "-5"}),
            400,
            "EXECUTIONDURATION",
        ),
        (
            api.post(f"/tap/async/{job_id}/destruction", data={"DESTRUCTION": "soon"}),
            400,
            "ISO 8601",
        ),
        (api.get(f"/tap/async/{job_id}", params={"WAIT": "a while"}), 400, "WAIT"),
        (api.get(f"/tap/async/{job_id}", params={"WAIT": "1", "PHASE": "X"}), 400, "UWS phase"),
        (api.get("/tap/async", params={"PHASE": "DONE"}), 400, "UWS phase"),
        (api.get("/tap/async", params={"LAST": "0"}), 400, "LAST"),
        (api.get("/tap/async", params={"AFTER": "yesterday"}), 400, "AFTER"),
        (api.post(f"/tap/async/{job_id}", data={"ACTION": "EXPLODE"}), 400, "ACTION=DELETE"),
        (api.get("/tap/async/nosuchjob0000000"), 404, "no job"),
        (api.get("/tap/async/nosuchjob0000000/phase"), 404, "no job"),
        (api.delete("/tap/async/nosuchjob0000000"), 404, "no job"),
        (api.get(f"/tap/async/{job_id}/error"), 404, "PENDING"),
        (api.get(f"/tap/async/{job_id}/results/result"), 404, "PENDING"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (words, response.text)
        assert words.lower() in dali_error(response).lower(), (words, response.text)
    assert phase_of(api, job_id) == "PENDING"  # nothing changed it


def test_execution_duration_and_destruction_are_capped(
    api: TestClient, api_settings: Settings
) -> None:
    job_id = create(api, QUERY=COUNT)
    limit = int(api_settings.async_timeout_limit_s)
    assert api.get(f"/tap/async/{job_id}/executionduration").text == "3600"
    for asked, kept in (("120", "120"), ("0", str(limit)), (str(10 * limit), str(limit))):
        response = api.post(
            f"/tap/async/{job_id}/executionduration",
            data={"EXECUTIONDURATION": asked},
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert api.get(f"/tap/async/{job_id}/executionduration").text == kept

    created = datetime.fromisoformat(job_xml(api, job_id).findtext(f"{UWS}creationTime") or "")
    default = datetime.fromisoformat(api.get(f"/tap/async/{job_id}/destruction").text)
    assert abs((default - created).total_seconds() - api_settings.job_retention_s) < 1
    sooner = (created + timedelta(hours=1)).replace(microsecond=0)
    api.post(f"/tap/async/{job_id}/destruction", data={"DESTRUCTION": sooner.isoformat()})
    assert datetime.fromisoformat(api.get(f"/tap/async/{job_id}/destruction").text) == sooner
    far = "2999-01-01T00:00:00Z"
    api.post(f"/tap/async/{job_id}/destruction", data={"DESTRUCTION": far})
    assert datetime.fromisoformat(api.get(f"/tap/async/{job_id}/destruction").text) == default

    api.post(f"/tap/async/{job_id}/phase", data={"PHASE": "RUN"})
    wait_final(api, job_id)
    late = api.post(f"/tap/async/{job_id}/executionduration", data={"EXECUTIONDURATION": "9"})
    assert late.status_code == 409


# --- abort, time limit, delete, destruction --------------------------------------------------


def test_abort_cancels_the_worker_statements(api: TestClient, spec: ClusterSpec) -> None:
    job_id = create(api, QUERY=SLOW, PHASE="RUN", EXECUTIONDURATION=LONG)
    running = wait_for(lambda: [q for q in engine_queries(spec, job_id) if q[1] == "running"])
    assert running, "the job's query did not start"
    query_id = running[0][0]
    assert wait_for(lambda: busy_sessions(spec, query_id) > 0, 10)
    assert phase_of(api, job_id) == "EXECUTING"
    started = time.monotonic()
    response = api.post(
        f"/tap/async/{job_id}/phase", data={"PHASE": "ABORT"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert phase_of(api, job_id) == "ABORTED"
    assert engine_queries(spec, job_id) == [(query_id, "killed")]
    assert wait_for(lambda: busy_sessions(spec, query_id) == 0, 10)
    assert time.monotonic() - started < 10  # the query would have run far longer
    doc = job_xml(api, job_id)
    assert doc.findtext(f"{UWS}errorSummary/{UWS}message") == "aborted on request"
    assert list(doc.iter(f"{UWS}result")) == []
    # a finished job stays as it is
    assert api.post(f"/tap/async/{job_id}/phase", data={"PHASE": "ABORT"}).status_code == 200
    assert phase_of(api, job_id) == "ABORTED"


def test_abort_of_a_pending_job(api: TestClient) -> None:
    job_id = create(api, QUERY=COUNT)
    api.post(f"/tap/async/{job_id}/phase", data={"PHASE": "ABORT"})
    assert phase_of(api, job_id) == "ABORTED"


def test_exceeding_the_execution_duration_is_an_error(api: TestClient, spec: ClusterSpec) -> None:
    job_id = create(api, QUERY=SLOW, EXECUTIONDURATION="1", PHASE="RUN")
    doc = wait_final(api, job_id, 60)
    assert doc.findtext(f"{UWS}phase") == "ERROR"
    message = doc.findtext(f"{UWS}errorSummary/{UWS}message") or ""
    assert "execution duration of 1 s" in message
    assert "execution duration" in dali_error(api.get(f"/tap/async/{job_id}/error"))
    [(query_id, status)] = engine_queries(spec, job_id)
    assert status != "running"
    assert wait_for(lambda: busy_sessions(spec, query_id) == 0, 10)


def test_the_sweeper_kills_queries_of_jobs_that_no_longer_execute(
    api: TestClient, spec: ClusterSpec, czar: psycopg.Connection
) -> None:
    """An abort that came between the start of a job and the start of its query."""
    job_id = create(api, QUERY=SLOW, PHASE="RUN", EXECUTIONDURATION=LONG)
    running = wait_for(lambda: [q for q in engine_queries(spec, job_id) if q[1] == "running"])
    assert running
    czar.execute("UPDATE qserv_meta.uws_jobs SET phase = 'ABORTED' WHERE id = %s", (job_id,))
    jobs: Jobs = api.app.state.jobs  # type: ignore[attr-defined]
    jobs.sweep()
    assert engine_queries(spec, job_id) == [(running[0][0], "killed")]
    assert wait_for(lambda: busy_sessions(spec, running[0][0]) == 0, 10)
    assert phase_of(api, job_id) == "ABORTED"


def test_delete_destroys_the_job_and_its_files(api: TestClient, api_settings: Settings) -> None:
    assert api_settings.results_dir is not None
    for how in ("DELETE", "POST"):
        job_id = create(api, QUERY=COUNT, PHASE="RUN")
        assert wait_final(api, job_id).findtext(f"{UWS}phase") == "COMPLETED"
        folder = Path(api_settings.results_dir) / job_id
        assert (folder / "result.xml").is_file()
        if how == "DELETE":
            response = api.delete(f"/tap/async/{job_id}", follow_redirects=False)
        else:
            response = api.post(
                f"/tap/async/{job_id}", data={"action": "delete"}, follow_redirects=False
            )
        assert response.status_code == 303
        assert response.headers["location"].endswith("/tap/async")
        assert api.get(f"/tap/async/{job_id}").status_code == 404
        assert not folder.exists()
        ids = {r.get("id") for r in ET.fromstring(api.get("/tap/async").content)}
        assert job_id not in ids


def test_delete_of_an_executing_job_kills_its_query(api: TestClient, spec: ClusterSpec) -> None:
    job_id = create(api, QUERY=SLOW, PHASE="RUN", EXECUTIONDURATION=LONG)
    running = wait_for(lambda: [q for q in engine_queries(spec, job_id) if q[1] == "running"])
    assert running
    assert api.delete(f"/tap/async/{job_id}", follow_redirects=False).status_code == 303
    assert engine_queries(spec, job_id) == [(running[0][0], "killed")]
    assert wait_for(lambda: busy_sessions(spec, running[0][0]) == 0, 10)


def test_expired_jobs_are_swept_with_their_files(api: TestClient, api_settings: Settings) -> None:
    assert api_settings.results_dir is not None
    job_id = create(api, QUERY=COUNT, PHASE="RUN")
    wait_final(api, job_id)
    keep = create(api, QUERY=COUNT)
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    api.post(f"/tap/async/{job_id}/destruction", data={"DESTRUCTION": past})
    assert (Path(api_settings.results_dir) / job_id).is_dir()
    jobs: Jobs = api.app.state.jobs  # type: ignore[attr-defined]
    jobs.sweep()  # what the sweeper does every minute
    assert api.get(f"/tap/async/{job_id}").status_code == 404
    assert not (Path(api_settings.results_dir) / job_id).exists()
    assert phase_of(api, keep) == "PENDING"


def test_uploaded_files_are_kept_with_the_job(api: TestClient, api_settings: Settings) -> None:
    assert api_settings.results_dir is not None
    targets = b"id,ra,dec\n1,10.0,-5.0\n2,11.0,-6.0\n"
    response = api.post(
        "/tap/async",
        data={"QUERY": "SELECT * FROM TAP_UPLOAD.t", "UPLOAD": "t,param:part1"},
        files={"part1": ("targets.csv", targets, "text/csv")},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    job_id = response.headers["location"].rsplit("/", 1)[1]
    doc = job_xml(api, job_id)
    params = {p.get("id"): p.text for p in doc.iter(f"{UWS}parameter")}
    assert params["upload"] == "t,param:part1"
    stored = list((Path(api_settings.results_dir) / job_id / "uploads").iterdir())
    assert [p.read_bytes() for p in stored] == [targets]


def test_a_czar_without_the_jobs_table_gets_advice(
    api_settings: Settings, spec: ClusterSpec, czar: psycopg.Connection
) -> None:
    """A cluster made by an older version: the service starts, /tap/async says what to do."""
    czar.execute("ALTER TABLE qserv_meta.uws_jobs RENAME TO uws_jobs_away")
    try:
        with TestClient(create_app(api_settings, spec)) as client:
            response = client.get("/tap/async")
            assert response.status_code == 503
            assert "qserv-py init" in dali_error(response)
            assert client.get("/tap/sync", params={"QUERY": COUNT}).status_code == 200
    finally:
        czar.execute("ALTER TABLE qserv_meta.uws_jobs_away RENAME TO uws_jobs")


# --- persistence and restarts (a real server) ------------------------------------------------


@pytest.fixture
def remote(served: Served) -> Iterator[httpx.Client]:
    """HTTP requests to the served app."""
    with httpx.Client(base_url=served.url, timeout=120) as client:
        yield client


def test_jobs_and_results_survive_a_restart(
    served: Served, remote: httpx.Client, expected_count: int
) -> None:
    done = create(remote, QUERY=COUNT, PHASE="RUN", RESPONSEFORMAT="csv")
    assert wait_final(remote, done).findtext(f"{UWS}phase") == "COMPLETED"
    result = remote.get(f"/tap/async/{done}/results/result").content
    pending = create(remote, QUERY=COUNT)
    served.restart()
    assert phase_of(remote, done) == "COMPLETED"
    assert remote.get(f"/tap/async/{done}/results/result").content == result
    assert result.decode().split() == ["n", str(expected_count)]
    assert phase_of(remote, pending) == "PENDING"
    remote.post(f"/tap/async/{pending}/phase", data={"PHASE": "RUN"})
    assert wait_final(remote, pending).findtext(f"{UWS}phase") == "COMPLETED"


def test_jobs_of_a_vanished_service_are_recovered(
    served: Served, remote: httpx.Client, czar: psycopg.Connection
) -> None:
    """As if a service died: its QUEUED job runs after the restart, its EXECUTING one is
    ERROR (the next service does not rerun it)."""
    queued = create(remote, QUERY=COUNT)
    executing = create(remote, QUERY=COUNT)
    czar.execute(
        "UPDATE qserv_meta.uws_jobs SET phase = 'QUEUED', runner = 'gone' WHERE id = %s",
        (queued,),
    )
    czar.execute(
        "UPDATE qserv_meta.uws_jobs SET phase = 'EXECUTING', runner = 'gone',"
        " start_time = now() WHERE id = %s",
        (executing,),
    )
    served.restart()
    assert wait_final(remote, queued).findtext(f"{UWS}phase") == "COMPLETED"
    doc = job_xml(remote, executing)
    assert doc.findtext(f"{UWS}phase") == "ERROR"
    assert doc.findtext(f"{UWS}errorSummary/{UWS}message") == STOPPED


def test_stopping_the_service_ends_executing_jobs(
    served: Served, remote: httpx.Client, spec: ClusterSpec
) -> None:
    job_id = create(remote, QUERY=SLOW, PHASE="RUN", EXECUTIONDURATION=LONG)
    running = wait_for(lambda: [q for q in engine_queries(spec, job_id) if q[1] == "running"])
    assert running
    served.restart()
    doc = job_xml(remote, job_id)
    assert doc.findtext(f"{UWS}phase") == "ERROR"
    assert doc.findtext(f"{UWS}errorSummary/{UWS}message") == STOPPED
    assert engine_queries(spec, job_id) == [(running[0][0], "killed")]
    assert wait_for(lambda: busy_sessions(spec, running[0][0]) == 0, 10)


# --- pyvo ----------------------------------------------------------------------------------------


def test_pyvo_run_async(tap_url: str, expected_count: int) -> None:
    result = pyvo.dal.TAPService(tap_url).run_async(COUNT)
    assert int(result["n"][0]) == expected_count


def test_pyvo_job_life_cycle(tap_url: str, expected_count: int) -> None:
    service = pyvo.dal.TAPService(tap_url)
    job = service.submit_job("SELECT TOP 5 objectId, coord_ra FROM Object ORDER BY objectId")
    assert job.phase == "PENDING"
    assert job.query.startswith("SELECT TOP 5")
    job.execution_duration = 300
    assert job.execution_duration.value == 300
    job.run().wait(timeout=120)
    assert job.phase == "COMPLETED"
    result = job.fetch_result()
    assert len(result) == 5
    assert list(result["objectId"]) == sorted(result["objectId"])
    assert job.job_id in {j.jobid for j in service.get_job_list(phases=["COMPLETED"], last=50)}
    url = job.url
    job.delete()
    assert service._session.get(url).status_code == 404

    failing = service.submit_job("SELECT nonsense FROM Object")
    failing.run().wait(timeout=120)
    with pytest.raises(pyvo.dal.DALQueryError, match="nonsense"):
        failing.raise_if_error()
    failing.delete()
