"""Reading a request's form with its size checked while it streams in.

``request.form()`` reads all of a body before anything can look at its size, and a file
part is then read whole into memory by the route. :func:`read_form` parses the same
form (urlencoded or multipart, Starlette's parsers) from the body's stream counted as it
arrives: a body larger than the upload limit (``upload_max_file_bytes``) plus ``FIELDS_SLACK``
for the other fields is refused at the first byte over it (and at once when its
Content-Length says so), before it is all received. File parts are spooled by the
parser (to disk past 1 MB), so what a route reads of them is bounded by the limit; and
before a route reads them, the memory their size needs is granted by the process's
memory ceiling or the request is refused (:mod:`qserv_py.exec.memory`, 503).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import FormParser, MultiPartParser

from qserv_py.errors import UploadError
from qserv_py.exec import memory

#: bytes a form may have besides its uploads (the query text and the other parameters)
FIELDS_SLACK = 16 << 20


def too_large(limit: int, seen: int | None = None) -> UploadError:
    size = f" ({seen:,} bytes or more)" if seen is not None else ""
    return UploadError(
        f"the request body is too large{size}: uploads may have {limit:,} bytes (setting "
        f"upload_max_file_bytes) and the other parameters {FIELDS_SLACK:,}; send a smaller "
        "table, or in a compact format (VOTable BINARY2, Parquet)"
    )


async def counted(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The body's chunks, refused once more than ``limit + FIELDS_SLACK`` bytes came;
    joined into blocks of ``BLOCK`` bytes (the server's chunks are ~64 KB: the parser's
    work, and each write of a file part spooled to disk, a thread hop, are per chunk)."""
    most = limit + FIELDS_SLACK
    seen = 0
    pending: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > most:
            raise too_large(limit, seen)
        pending.append(chunk)
        size += len(chunk)
        if size >= BLOCK:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


#: bytes of the body handed to the form parser at a time (see counted)
BLOCK = 1 << 20


def hold_memory(size: int) -> None:
    """Hold the memory an upload of ``size`` bytes needs (until the request is answered),
    or refuse it (503) when the service process cannot spare it (``exec/memory.py``)."""
    with memory.CEILING.upload(size, "the request's upload"):
        pass


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body of ``request`` (a JSON document), its size checked as it comes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + FIELDS_SLACK:
        raise too_large(limit, int(length))
    if length.isdigit():
        hold_memory(int(length))
    body = b"".join([chunk async for chunk in counted(request, limit)])
    if not length.isdigit():
        hold_memory(len(body))
    return body


async def read_form(
    request: Request, limit: int, *, max_files: int = 100, max_fields: int = 1000
) -> FormData:
    """The form of ``request`` (urlencoded or multipart), its size checked as it comes."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + FIELDS_SLACK:
        raise too_large(limit, int(length))
    if length.isdigit():
        hold_memory(int(length))
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        # (starlette's own part limit, 1 MiB, would refuse a long query before
        # max_query_chars could name the setting: the body's limit is the only one)
        return await FormParser(
            request.headers, counted(request, limit), max_part_size=limit + FIELDS_SLACK
        ).parse()
    parser = MultiPartParser(
        request.headers,
        counted(request, limit),
        max_files=max_files,
        max_fields=max_fields,
        max_part_size=limit + FIELDS_SLACK,
    )
    form = await parser.parse()
    if not length.isdigit():  # the parts were spooled to disk; their bytes come next
        hold_memory(
            sum(item.size or 0 for _, item in form.multi_items() if isinstance(item, UploadFile))
        )
    return form
