"""qserv_py: a sharded, HEALPix-partitioned SQL catalog database for survey astronomy,
on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qserv_py.client import Client
    from qserv_py.cluster.spec import ClusterSpec

__version__ = "0.1.0"


def connect(cluster: str | Path | ClusterSpec, default_catalog: str | None = None) -> Client:
    """A client for the cluster of a cluster file or local cluster directory (see
    :func:`qserv_py.client.connect`)."""
    from qserv_py.client import connect as _connect

    return _connect(cluster, default_catalog)
