"""The memory ceiling's grants (qserv_py.exec.memory): a result that finds no room
waits for the grants of the queries running now instead of being refused (fifty small
sync queries at once were refused with 503 once the first few held large grants)."""

from __future__ import annotations

import threading

import pytest

from qserv_py.errors import ServiceMemoryFull
from qserv_py.exec import memory
from qserv_py.exec.memory import MIN_GRANT, RESULT_FACTOR, Ceiling

MB = 1 << 20


def test_a_result_waits_for_grants_given_back(monkeypatch: pytest.MonkeyPatch) -> None:
    ceiling = Ceiling(200 * RESULT_FACTOR * MB, rss=lambda: 0)
    first = ceiling.result(10_000 * MB)
    granted = first.__enter__()  # half the headroom
    assert granted == 100 * MB
    second = ceiling.result(10_000 * MB)
    assert second.__enter__() == 50 * MB
    held = [ceiling.result(10_000 * MB) for _ in range(5)]  # 25, 12.5, … 1.6 MB
    for grant in held:
        grant.__enter__()
    # no room for even MIN_GRANT is left: without a wait, refused
    assert ceiling.headroom() < 2 * RESULT_FACTOR * MIN_GRANT
    monkeypatch.setattr(memory, "WAIT_S", 0.0)
    with (
        pytest.raises(ServiceMemoryFull, match="service_max_memory_mb"),
        ceiling.result(10_000 * MB),
    ):
        pass
    # with one: it gets its grant once the first query gives its own back
    monkeypatch.setattr(memory, "WAIT_S", 3600.0)
    got: list[int] = []

    def waiter() -> None:
        with ceiling.result(10_000 * MB) as bytes_:
            got.append(bytes_)

    thread = threading.Thread(target=waiter)
    thread.start()
    first.__exit__(None, None, None)
    thread.join(timeout=600)
    assert not thread.is_alive()
    assert got and got[0] >= MIN_GRANT


def test_nothing_held_means_no_wait() -> None:
    """When the process's own memory fills the ceiling, waiting frees nothing."""
    ceiling = Ceiling(100 * MB, rss=lambda: 100 * MB)
    with pytest.raises(ServiceMemoryFull), ceiling.result(10 * MB):
        pass
