"""A bounded schemathesis run over the service's own OpenAPI document (issue 13): requests
generated from every operation's schema — valid and invalid parameters, bodies, path
ids — sent to the real HTTP server on the session cluster; none may answer 5xx.
Deterministic (``derandomize``) and a few examples per operation: under a minute."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case

from qserv_py.api.app import create_app
from qserv_py.config import load_settings
from tests.api.conftest import Served


def _document() -> dict[str, Any]:
    """The OpenAPI document of the app (made without serving it: routes only)."""
    return create_app(load_settings({"cluster": "/nonexistent"})).openapi()


schema = schemathesis.openapi.from_dict(_document())


@schema.parametrize()
@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_5xx(case: Case, served: Served) -> None:
    response = case.call(base_url=served.url, timeout=60)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} answered {response.status_code}: "
        f"{response.text[:300]}"
    )
