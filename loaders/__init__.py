"""Bulk loading of data releases (importable as qserv_py.loaders)."""
