"""The UWS 1.1 job model of TAP async: phases, the job record as stored, UWS times.

Phases (UWS 1.1): PENDING —PHASE=RUN→ QUEUED → EXECUTING → COMPLETED | ERROR |
ABORTED; PHASE=ABORT takes a PENDING, QUEUED or EXECUTING job to ABORTED, and cancels the
worker statements of its query. The store (:mod:`qserv_py.api.job_store`) makes the
changes a client asks for; the runner (:mod:`qserv_py.api.jobs`) the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from qserv_py.errors import JobError

PENDING, QUEUED, EXECUTING = "PENDING", "QUEUED", "EXECUTING"
COMPLETED, ERROR, ABORTED, ARCHIVED = "COMPLETED", "ERROR", "ABORTED", "ARCHIVED"
PHASES = (PENDING, QUEUED, EXECUTING, COMPLETED, ERROR, ABORTED, ARCHIVED)
#: the phases a WAIT blocks in (UWS 1.1 §2.2.1.1)
ACTIVE = (PENDING, QUEUED, EXECUTING)


def isoformat(moment: datetime) -> str:
    """UTC, milliseconds, ``Z``: ``2030-01-01T00:00:00.000Z`` (what pyvo and DALI read)."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(name: str, value: str) -> datetime:
    """An ISO 8601 time of a parameter (UTC when it names no zone)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise JobError(
            f"{name}={value!r} is not an ISO 8601 time; write e.g. 2030-01-31T12:00:00Z"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_phase(name: str, value: str) -> str:
    """A UWS phase name (case-insensitive)."""
    phase = value.strip().upper()
    if phase not in PHASES:
        raise JobError(f"{name}={value!r} is not a UWS phase; use one of {', '.join(PHASES)}")
    return phase


@dataclass(frozen=True)
class Job:
    """A job as stored (the columns of ``qserv_meta.uws_jobs``)."""

    id: str
    run_id: str | None
    owner: str | None
    phase: str
    parameters: dict[str, list[str]]
    uploads: dict[str, str]
    execution_duration: int
    creation_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    destruction: datetime
    runner: str | None
    query_id: int | None
    error: str | None
    result_file: str | None
    result_type: str | None
    result_size: int | None
    result_rows: int | None
    overflow: bool | None


@dataclass(frozen=True)
class JobRef:
    """A job as the job list shows it."""

    id: str
    phase: str
    run_id: str | None
    owner: str | None
    creation_time: datetime
