"""Users and ownership (auth = token): two users and an anonymous client; nobody sees,
downloads, aborts, deletes or kills another's jobs and queries; admins see all; per-user
limits; the access log. The service over the session cluster, in this process."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import pyvo
import requests
from fastapi.testclient import TestClient

from qserv_py.api.app import create_app
from qserv_py.cli import main
from qserv_py.cluster.db import connect
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.cluster.users import add_user, remove_user, take_query_slot, user_of_token
from qserv_py.config import Settings
from qserv_py.errors import ConfigError
from tests.api.conftest import Served

HANG_GUARD_S = 120.0
QUERY = "SELECT TOP 3 objectId FROM Object ORDER BY objectId"
SLOW = "SELECT COUNT(*) FROM CcdVisit a, CcdVisit b, CcdVisit c, CcdVisit d, CcdVisit e"
NAMES = ("t13alice", "t13bob", "t13root")


@pytest.fixture(scope="module")
def tokens(spec: ClusterSpec) -> Iterator[dict[str, str]]:
    found = {name: add_user(spec, name, admin=name == "t13root") for name in NAMES}
    yield found
    for name in NAMES:
        remove_user(spec, name)


@pytest.fixture(scope="module")
def app(api_settings: Settings, spec: ClusterSpec, client: object) -> Iterator[TestClient]:
    settings = api_settings.model_copy(
        update={"auth": "token", "user_max_jobs": 1, "user_max_queries": 1}
    )
    with TestClient(create_app(settings, spec)) as test_client:
        yield test_client


def auth(tokens: dict[str, str], name: str | None) -> dict[str, str]:
    return {} if name is None else {"Authorization": f"Bearer {tokens[name]}"}


def create_job(app: TestClient, headers: dict[str, str], query: str, run: bool = True) -> str:
    data = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query}
    if run:
        data["PHASE"] = "RUN"
    response = app.post("/tap/async", data=data, headers=headers, follow_redirects=False)
    assert response.status_code == 303, response.text
    return response.headers["location"].rsplit("/", 1)[-1]


def wait_phase(app: TestClient, headers: dict[str, str], job_id: str, *phases: str) -> str:
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        phase = app.get(f"/tap/async/{job_id}/phase", headers=headers).text
        if phase in phases:
            return phase
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {phases}")


def test_tokens_are_stored_hashed(spec: ClusterSpec, tokens: dict[str, str]) -> None:
    with connect(spec.czar, autocommit=True) as czar:
        stored = czar.execute(
            "SELECT token_hash FROM qserv_meta.users WHERE name = %s", ("t13alice",)
        ).fetchone()
    assert stored is not None and tokens["t13alice"].encode() not in bytes(stored[0])
    assert len(bytes(stored[0])) == 32  # a SHA-256
    user = user_of_token(spec, tokens["t13alice"])
    assert user is not None and user.name == "t13alice" and not user.admin
    assert user_of_token(spec, tokens["t13alice"] + "x") is None
    with pytest.raises(ConfigError, match="not allowed"):
        add_user(spec, "no spaces")


def test_user_commands(spec: ClusterSpec, capsys: pytest.CaptureFixture[str]) -> None:
    """qserv-py user add prints the token once; list shows the user; remove ends it."""
    cluster = ["--cluster", str(spec.path), "user"]
    assert main([*cluster, "add", "t13cli", "--admin"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    user = user_of_token(spec, token)
    assert user is not None and user.name == "t13cli" and user.admin
    assert main([*cluster, "list"]) == 0
    listed = capsys.readouterr().out
    assert "t13cli" in listed and "admin" in listed and token not in listed
    assert main([*cluster, "remove", "t13cli"]) == 0
    assert user_of_token(spec, token) is None
    assert main([*cluster, "remove", "t13cli"]) == 1


def test_who_may_do_what(app: TestClient, tokens: dict[str, str]) -> None:
    anonymous_sync = app.get("/tap/sync", params={"LANG": "ADQL", "QUERY": QUERY})
    assert anonymous_sync.status_code == 200
    assert app.get("/tap/capabilities").status_code == 200  # metadata is open
    for response in (
        app.post("/tap/async", data={"QUERY": QUERY}),
        app.get("/tap/async"),
        app.get("/api/v1/queries"),
        app.get("/tap/sync", params={"QUERY": QUERY}, headers={"Authorization": "Bearer nope"}),
        app.get("/tap/sync", params={"QUERY": QUERY}, headers={"Authorization": "Basic eDp5"}),
        app.get("/tap/sync", params={"QUERY": QUERY}, headers={"Authorization": "Basic %%%"}),
        app.post(
            "/tap/sync",
            data={"QUERY": "SELECT * FROM TAP_UPLOAD.t", "UPLOAD": "t,param:t"},
            files={"t": ("t.csv", b"a\n1\n")},
        ),
        app.post("/api/v1/xmatch", json={"targets": {"ra": [1.0], "dec": [2.0]}, "radius": 1}),
    ):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "Basic" in response.headers["www-authenticate"]  # TOPCAT answers Basic
    # a script in a browser (the portal) is challenged with Bearer only: a Basic challenge
    # would open the browser's login dialog over the page
    scripted = {"X-Requested-With": "XMLHttpRequest", "Authorization": "Bearer nope"}
    for response in (
        app.get("/tap/async", headers={"X-Requested-With": "XMLHttpRequest"}),
        app.get("/tap/sync", params={"QUERY": QUERY}, headers=scripted),
    ):
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == 'Bearer realm="qserv_py"'
    with_token = app.get("/tap/sync", params={"QUERY": QUERY}, headers=auth(tokens, "t13bob"))
    assert with_token.status_code == 200 and with_token.content == anonymous_sync.content
    # TOPCAT's way: HTTP Basic when challenged, the token as the password
    basic = app.get("/tap/async", auth=("x-oauth-basic", tokens["t13bob"]))
    assert basic.status_code == 200


def test_jobs_belong_to_their_user(app: TestClient, tokens: dict[str, str]) -> None:
    alice, bob, root = (auth(tokens, n) for n in NAMES)
    job = create_job(app, alice, QUERY)
    assert wait_phase(app, alice, job, "COMPLETED", "ERROR") == "COMPLETED"
    assert app.get(f"/tap/async/{job}/owner", headers=alice).text == "t13alice"
    result = app.get(f"/tap/async/{job}/results/result", headers=alice)
    assert result.status_code == 200 and b"<TABLE" in result.content
    base = f"/tap/async/{job}"
    for method, path, data in (
        ("GET", base, None),
        ("GET", f"{base}/phase", None),
        ("GET", f"{base}/results", None),
        ("GET", f"{base}/results/result", None),
        ("GET", f"{base}/parameters", None),
        ("GET", f"{base}/owner", None),
        ("GET", f"{base}/error", None),
        ("GET", f"{base}/quote", None),
        ("GET", f"{base}/executionduration", None),
        ("GET", f"{base}/destruction", None),
        ("POST", f"{base}/executionduration", {"EXECUTIONDURATION": "10"}),
        ("POST", f"{base}/parameters", {"MAXREC": "1"}),
        ("POST", f"{base}/phase", {"PHASE": "ABORT"}),
        ("POST", f"{base}/destruction", {"DESTRUCTION": "2030-01-01T00:00:00Z"}),
        ("POST", base, {"ACTION": "DELETE"}),
        ("DELETE", base, None),
    ):
        response = app.request(method, path, data=data, headers=bob, follow_redirects=False)
        assert response.status_code == 403, (method, path, response.text)
        assert "another user" in response.text
        anonymous = app.request(method, path, data=data, follow_redirects=False)
        assert anonymous.status_code == 401, (method, path)

    def listed(headers: dict[str, str]) -> bool:
        return job in app.get("/tap/async", headers=headers).text

    assert listed(alice) and listed(root) and not listed(bob)
    assert app.get(f"{base}/results/result", headers=root).status_code == 200  # an admin

    def job_queries(headers: dict[str, str]) -> list[int]:
        found = app.get("/api/v1/queries", params={"limit": 1000}, headers=headers).json()
        return [q["id"] for q in found if q["owner"] == f"uws:{job}"]

    (query_id,) = job_queries(alice)  # the job's query is hers: bob neither sees nor kills it
    assert job_queries(bob) == [] and job_queries(root) == [query_id]
    for response in (
        app.get(f"/api/v1/queries/{query_id}", headers=bob),
        app.delete(f"/api/v1/queries/{query_id}", headers=bob),
    ):
        assert response.status_code == 403 and "another user" in response.text
    assert app.delete(base, headers=alice, follow_redirects=False).status_code == 303
    assert app.get(base, headers=alice).status_code == 404


def test_queries_belong_to_their_user(app: TestClient, tokens: dict[str, str]) -> None:
    alice, bob, root = (auth(tokens, n) for n in NAMES)
    ran = app.post("/api/v1/query", json={"query": QUERY}, headers=alice)
    assert ran.status_code == 200
    query_id = ran.json()["query_id"]
    assert app.get(f"/api/v1/queries/{query_id}", headers=alice).json()["owner"] == "rest:t13alice"
    assert app.get(f"/api/v1/queries/{query_id}", headers=root).status_code == 200
    for response in (
        app.get(f"/api/v1/queries/{query_id}", headers=bob),
        app.delete(f"/api/v1/queries/{query_id}", headers=bob),
    ):
        assert response.status_code == 403 and "another user" in response.text

    def ids(headers: dict[str, str]) -> set[int]:
        listed = app.get("/api/v1/queries", params={"limit": 1000}, headers=headers)
        assert listed.status_code == 200
        return {q["id"] for q in listed.json()}

    assert query_id in ids(alice) and query_id in ids(root) and query_id not in ids(bob)
    assert all(q["owner"] == "rest:t13alice" or q["owner"].startswith("uws:")
               for q in app.get("/api/v1/queries", headers=alice).json())  # fmt: skip


def test_concurrent_jobs_limit(app: TestClient, tokens: dict[str, str]) -> None:
    """user_max_jobs = 1: a second job is refused while the first is queued or running."""
    bob = auth(tokens, "t13bob")
    first = create_job(app, bob, SLOW)
    try:
        second = app.post(
            "/tap/async", data={"QUERY": QUERY, "PHASE": "RUN"}, headers=bob, follow_redirects=False
        )
        assert second.status_code == 429 and "user_max_jobs" in second.text
        pending = create_job(app, bob, QUERY, run=False)  # a PENDING job is not counted
        refused = app.post(f"/tap/async/{pending}/phase", data={"PHASE": "RUN"}, headers=bob)
        assert refused.status_code == 429
        other = create_job(app, auth(tokens, "t13alice"), QUERY)  # another user is not held
        wait_phase(app, auth(tokens, "t13alice"), other, "COMPLETED")
    finally:
        app.post(f"/tap/async/{first}/phase", data={"PHASE": "ABORT"}, headers=bob)
    assert wait_phase(app, bob, first, "ABORTED") == "ABORTED"


def test_concurrent_queries_limit_and_killing_ones_own(
    app: TestClient, tokens: dict[str, str]
) -> None:
    """user_max_queries = 1: while alice's query runs, her next one is refused (bob's is
    not); bob cannot kill hers, she can."""
    alice, bob = auth(tokens, "t13alice"), auth(tokens, "t13bob")
    label = uuid.uuid4().hex[:12]
    answers: dict[str, httpx.Response] = {}

    def run() -> None:
        slow = SLOW.replace("COUNT(*)", f"COUNT(*) AS n_{label}")
        answers["slow"] = app.post("/api/v1/query", json={"query": slow}, headers=alice)

    thread = threading.Thread(target=run)
    thread.start()
    try:

        def running() -> int | None:
            listed = app.get("/api/v1/queries", params={"status": "running"}, headers=alice)
            found = [q["id"] for q in listed.json() if label in q["text"]]
            return found[0] if found else None

        deadline = time.monotonic() + HANG_GUARD_S
        while (query_id := running()) is None:
            assert time.monotonic() < deadline and thread.is_alive(), "the query never ran"
            time.sleep(0.05)
        refused = app.get("/tap/sync", params={"QUERY": QUERY}, headers=alice)
        assert refused.status_code == 429 and "user_max_queries" in refused.text
        assert app.get("/tap/sync", params={"QUERY": QUERY}, headers=bob).status_code == 200
        assert app.delete(f"/api/v1/queries/{query_id}", headers=bob).status_code == 403
        killed = app.delete(f"/api/v1/queries/{query_id}", headers=alice)
        assert killed.status_code == 200 and killed.json()["status"] == "killed"
    finally:
        thread.join(HANG_GUARD_S)
    assert answers["slow"].status_code == 409 and "killed" in answers["slow"].text


#: another service process holding one of a user's query slots (as a process of
#: ``qserv-py serve --http-processes N`` running the user's query does) until stdin closes
HOLDER = """
import sys
from qserv_py.cluster.spec import ClusterSpec, Instance
from qserv_py.cluster.users import take_query_slot
spec = ClusterSpec("holder", Instance("czar", sys.argv[1]), ())
slot = take_query_slot(spec, sys.argv[2], 1)
print("held" if slot is not None else "refused", flush=True)
sys.stdin.read()
"""


def test_query_slots_hold_across_processes(
    app: TestClient, spec: ClusterSpec, tokens: dict[str, str]
) -> None:
    """user_max_queries = 1 counts alice's queries in every process on the czar: while
    another process holds her slot, this service refuses her query (429) and runs bob's;
    when that process dies, its slot is free again and her query runs."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, spec.czar.dsn, "t13alice"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        alice, bob = auth(tokens, "t13alice"), auth(tokens, "t13bob")
        refused = app.get("/tap/sync", params={"QUERY": QUERY}, headers=alice)
        assert refused.status_code == 429 and "user_max_queries = 1" in refused.text
        assert app.get("/tap/sync", params={"QUERY": QUERY}, headers=bob).status_code == 200
    finally:
        holder.kill()
        holder.wait(HANG_GUARD_S)
    deadline = time.monotonic() + HANG_GUARD_S
    while (slot := take_query_slot(spec, "t13alice", 1)) is None:  # its session ending
        assert time.monotonic() < deadline, "the dead process's slot was never freed"
        time.sleep(0.05)
    slot.release()
    assert app.get("/tap/sync", params={"QUERY": QUERY}, headers=alice).status_code == 200


def test_result_bytes_per_day(
    api_settings: Settings, spec: ClusterSpec, tokens: dict[str, str], client: object
) -> None:
    settings = api_settings.model_copy(update={"auth": "token", "user_max_result_bytes_per_day": 1})
    with TestClient(create_app(settings, spec)) as app:
        root = auth(tokens, "t13root")
        params = {"QUERY": QUERY}
        first = app.get("/tap/sync", params=params, headers=root)
        assert first.status_code in (200, 429)  # earlier tests may have used today's bytes
        refused = app.get("/tap/sync", params=params, headers=root)
        assert refused.status_code == 429 and "user_max_result_bytes_per_day" in refused.text
        assert app.get("/tap/sync", params=params).status_code == 200  # anonymous: not counted


def test_access_log(
    app: TestClient, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="qserv_py.access"):
        ran = app.post("/api/v1/query", json={"query": QUERY}, headers=auth(tokens, "t13alice"))
        app.get("/tap/async")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "qserv_py.access"]
    mine = [line for line in lines if line["route"] == "/api/v1/query"]
    assert mine and mine[-1]["user"] == "t13alice" and mine[-1]["status"] == 200
    assert mine[-1]["query_id"] == ran.json()["query_id"] and mine[-1]["rows"] == 3
    assert mine[-1]["bytes"] == len(ran.content) and mine[-1]["seconds"] > 0
    refused = [line for line in lines if line["route"] == "/tap/async"]
    assert refused and refused[-1]["status"] == 401 and refused[-1]["user"] is None


def test_pyvo_with_a_token(
    api_settings: Settings, spec: ClusterSpec, tokens: dict[str, str], client: object
) -> None:
    """pyvo as docs/security.md tells: a requests session with the Authorization header,
    used for the service, its async job and the result (a real HTTP server)."""
    served = Served(api_settings.model_copy(update={"auth": "token"}), spec)
    served.start()
    try:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {tokens['t13alice']}"
        tap = pyvo.dal.TAPService(f"{served.url}/tap", session=session)
        job = tap.submit_job(QUERY)
        job.run().wait(timeout=HANG_GUARD_S)
        assert job.phase == "COMPLETED" and job.owner == "t13alice"
        assert list(job.fetch_result().to_table()["objectId"]) == list(
            tap.search(QUERY).to_table()["objectId"]
        )
        job.delete()
        anonymous = pyvo.dal.TAPService(f"{served.url}/tap")
        with pytest.raises(pyvo.dal.DALServiceError):
            anonymous.submit_job(QUERY)
    finally:
        served.stop()
