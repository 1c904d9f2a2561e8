"""qserv_py: a sharded, HEALPix-partitioned SQL catalog database for survey astronomy,
on PostgreSQL."""

from __future__ import annotations

__version__ = "0.1.0"
