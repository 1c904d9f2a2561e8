"""TAP uploads by URL (``UPLOAD=name,http://...``): the table fetched from a real HTTP
server on loopback, with its limits (bytes, time, redirects, schemes, local addresses)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient

from qserv_py.api.app import create_app
from qserv_py.api.deps import TapParams
from qserv_py.api.upload_urls import fetch_upload
from qserv_py.api.uploads import read_uploads
from qserv_py.client import Client
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings
from qserv_py.errors import UploadError

TARGETS = b"id,ra,dec\n1,10.5,-3.25\n2,11.0,-3.5\n"


class _Files(BaseHTTPRequestHandler):
    """Serves the test's files; ``/hang`` answers nothing until the server stops."""

    files: ClassVar[dict[str, bytes]] = {}
    stop = threading.Event()

    def do_GET(self) -> None:
        if self.path == "/hang":
            self.stop.wait()
            return
        if self.path.startswith("/redirect-to/"):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/redirect-to/"))
            self.end_headers()
            return
        if self.path == "/endless":  # no Content-Length: the limit is seen while reading
            self.send_response(200)
            self.end_headers()
            while not self.stop.is_set():
                try:
                    self.wfile.write(b"0" * 65536)
                except OSError:
                    return
            return
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "no such file")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    """A real HTTP server on a free loopback port; its base URL."""
    _Files.files = {"/targets.csv": TARGETS, "/big.csv": TARGETS * 1000}
    _Files.stop.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    _Files.stop.set()
    server.shutdown()
    server.server_close()


def _upload(uri: str, **limits: object) -> dict[str, object]:
    options: dict[str, object] = dict(
        max_bytes=10_000,
        max_rows=100,
        max_file_bytes=10_000,
        url_timeout_s=30.0,
        allow_local_urls=True,
    )
    options.update(limits)
    params = TapParams({"upload": [f"t,{uri}"]}, {})
    return dict(read_uploads(params, **options))  # type: ignore[arg-type]


def test_a_table_at_a_url_is_fetched_and_read(files: str) -> None:
    table = _upload(f"{files}/targets.csv")["t"].table  # type: ignore[attr-defined]
    assert table.column_names == ["id", "ra", "dec"]
    assert table.column("ra").to_pylist() == [10.5, 11.0]
    redirected = _upload(f"{files}/redirect-to/{files}/targets.csv")["t"]
    assert redirected.table.num_rows == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path", "limits", "said"),
    [
        ("/missing.csv", {}, "HTTP 404"),
        ("/big.csv", {}, "the limit of uploads is 10,000 bytes"),  # by its Content-Length
        ("/endless", {}, "more than"),  # counted while streaming
        ("/hang", {"url_timeout_s": 0.5}, "not fetched within 0.5 s"),
        ("/redirect-to/ftp://127.0.0.1/x.csv", {}, "only http and https"),
    ],
)
def test_fetch_limits_give_clear_errors(
    files: str, path: str, limits: dict[str, object], said: str
) -> None:
    with pytest.raises(UploadError) as caught:
        _upload(f"{files}{path}", **limits)
    assert said in caught.value.message and "upload 't'" in caught.value.message


def test_local_addresses_are_refused_unless_allowed(files: str) -> None:
    with pytest.raises(UploadError, match="local or private network"):
        fetch_upload("t", f"{files}/targets.csv", max_bytes=10_000, timeout_s=5, allow_local=False)
    with pytest.raises(UploadError, match="local or private network"):  # by name too
        fetch_upload(
            "t", "http://localhost/x.csv", max_bytes=10_000, timeout_s=5, allow_local=False
        )
    with pytest.raises(UploadError, match="not supported"):
        _upload("file:///etc/passwd")


def test_tap_sync_query_joins_a_table_fetched_by_url(
    files: str, api_settings: Settings, spec: ClusterSpec, client: Client, api: TestClient
) -> None:
    """End to end: TAP sync with UPLOAD=t,<url> (a GET, no multipart), against the oracle
    of the same query with the values written in."""
    query = "SELECT t.id, t.ra FROM TAP_UPLOAD.t AS t ORDER BY t.id"
    params = {"QUERY": query, "UPLOAD": f"t,{files}/targets.csv", "RESPONSEFORMAT": "csv"}
    refused = api.get("/tap/sync", params=params)  # the session's service: defaults
    assert refused.status_code == 400 and "local or private network" in refused.text
    settings = api_settings.model_copy(update={"upload_url_allow_local": True})
    with TestClient(create_app(settings, spec)) as local:
        answer = local.get("/tap/sync", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.text.split() == ["id,ra", "1,10.5", "2,11.0"]
