"""The service over the session cluster: an in-process ASGI client, and a real HTTP server
(uvicorn in a thread) for pyvo. Both answer for catalog ``qt`` (the query release)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from qserv_py.api.app import create_app
from qserv_py.client import Client
from qserv_py.cluster.spec import ClusterSpec
from qserv_py.config import Settings


@pytest.fixture(scope="session")
def api_settings(settings: Settings, work_dir: Path) -> Settings:
    return settings.model_copy(
        update=dict(
            default_catalog="qt",
            results_dir=work_dir / "tap-results",
            admin_token="test-admin-token",
            maxrec_default=5_000,
        )
    )


@pytest.fixture(scope="session")
def api(api_settings: Settings, spec: ClusterSpec, client: Client) -> Iterator[TestClient]:
    """HTTP requests to the app in this process (``client`` loads catalog qt first)."""
    with TestClient(create_app(api_settings, spec)) as test_client:
        yield test_client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """The app served by uvicorn on a thread; ``restart()`` stops and starts it again."""

    def __init__(self, settings: Settings, spec: ClusterSpec) -> None:
        self.settings, self.spec = settings, spec
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(
            create_app(self.settings, self.spec),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(30)
        self.server = self.thread = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def served(api_settings: Settings, spec: ClusterSpec, client: Client) -> Iterator[Served]:
    """A real HTTP server on a free loopback port (``served.url``)."""
    server = Served(api_settings, spec)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tap_url(served: Served) -> str:
    return f"{served.url}/tap"
