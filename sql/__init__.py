"""SQL that runs inside PostgreSQL (package data of qserv_py)."""
