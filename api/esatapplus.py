"""The TAP service for ESA TAP+ clients at ``/esa/tap``: astroquery's ``TapPlus`` (the
client of astroquery.gaia and astroquery.esa).

TapPlus's table parser requires an ``esatapplus:flags`` attribute on every ``column`` of
``/tables``, an attribute VODataService does not allow (a schema-validating client, and
taplint, refuse the document that has it). So the standard ``/tap`` stays valid, and
``/esa/tap`` is the same service with that attribute: :class:`EsaTapPlus` maps every
request under ``/esa`` to its route under ``/`` (``root_path`` ``/esa``, so that the
URLs the service answers with — a job's location — stay under ``/esa``) and marks it
(``request.state.esatapplus``), which the tables document reads. Everything else —
users, limits, the access log — sees the standard route.

TapPlus also expects results in VOTable, FITS and ECSV gzip-compressed, as ESA's
services send them: it names the files it saves ``.gz`` and reads an async result
from the server by decompressing it first. Under ``/esa`` those results come with
``Content-Encoding: gzip`` (:func:`gzip_for`), so that a saved file is what its name
says::

    from astroquery.utils.tap.core import TapPlus
    tap = TapPlus(url="http://host:8080/esa/tap")
    tables = tap.load_tables()
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

#: the prefix of the ESA TAP+ view of the service
PREFIX = "/esa"


class EsaTapPlus:
    """ASGI middleware: ``/esa/...`` is served as ``/...``, marked ``esatapplus``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] in ("http", "websocket") else ""
        if path == PREFIX or path.startswith(PREFIX + "/"):
            scope = dict(scope)
            scope["path"] = path[len(PREFIX) :] or "/"
            raw = scope.get("raw_path")
            if isinstance(raw, bytes) and raw.startswith(PREFIX.encode()):
                scope["raw_path"] = raw[len(PREFIX) :] or b"/"
            scope["root_path"] = scope.get("root_path", "") + PREFIX
            scope["state"] = {**scope.get("state", {}), "esatapplus": True}
        await self.app(scope, receive, send)


def wants_esa(state: object) -> bool:
    """Whether a request came through ``/esa`` (its ``request.state``)."""
    return bool(getattr(state, "esatapplus", False))


#: result media types TapPlus expects gzip-compressed (its 'votable', 'fits', 'ecsv')
GZIPPED = (
    "application/x-votable+xml;serialization=BINARY2",
    "application/fits",
    "text/x-ecsv",
)
GZIP_HEADERS = {"Content-Encoding": "gzip"}
#: bytes of a result file compressed at a time
BLOCK = 1 << 20


def gzip_for(state: object, media_type: str | None) -> bool:
    """Whether a result of ``media_type`` goes gzip-compressed to this request."""
    return wants_esa(state) and media_type in GZIPPED


def compressed(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=6)


def compressed_file(path: Path) -> Iterator[bytes]:
    """A file gzip-compressed, a block at a time (a large result is never whole in memory)."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: the gzip format
    with path.open("rb") as file:
        while block := file.read(BLOCK):
            if out := packer.compress(block):
                yield out
    yield packer.flush()


def for_client(request: Request, response: Response) -> Response:
    """``response`` (a whole result) gzip-compressed if this request wants it so."""
    if response.status_code != 200 or not gzip_for(request.state, response.media_type):
        return response
    headers = {
        k: v
        for k, v in response.headers.items()
        if k.lower() not in ("content-length", "content-type")
    }
    return Response(
        compressed(bytes(response.body)),
        status_code=200,
        media_type=response.media_type,
        headers={**headers, **GZIP_HEADERS},
    )
