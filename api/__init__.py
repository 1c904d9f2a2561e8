"""The HTTP service: TAP, UWS, VOSI, REST (importable as qserv_py.api)."""
