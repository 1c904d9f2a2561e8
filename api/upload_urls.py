"""TAP uploads by URL (``UPLOAD=name,https://...``, TAPRegExt ``upload-http``).

The service fetches the table itself: http and https only, streamed in blocks with the
byte limit counted as it goes (a ``Content-Length`` over it is refused before reading),
a timeout on every network operation and a deadline on the whole transfer, at most
:data:`MAX_REDIRECTS` redirects, each to http(s) again.

A URL whose host resolves to a loopback, private, link-local or otherwise non-public
address is refused unless the ``upload_url_allow_local`` setting allows it: a user must
not be able to make the service read from the network it sits in (server-side request
forgery). The check is made on every hop of a redirect; it is a resolution check, so a
host that resolves differently a moment later (DNS rebinding) is not caught — an
operator who needs that guarantee puts the service behind an egress proxy.

Every failure is an :class:`~qserv_py.errors.UploadError` that names the upload, the
URL and what to do.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import urllib.error
import urllib.request
from email.message import Message
from http.client import HTTPMessage
from typing import IO
from urllib.parse import urlsplit

from qserv_py.errors import UploadError

#: redirects followed before giving up
MAX_REDIRECTS = 5
#: bytes read at a time
BLOCK = 1 << 20
SCHEMES = ("http", "https")
USER_AGENT = "qserv_py TAP upload fetcher"


def is_url(uri: str) -> bool:
    """Whether an UPLOAD URI is one the service fetches (http or https)."""
    return urlsplit(uri.strip()).scheme.lower() in SCHEMES


def fetch_upload(
    name: str, url: str, *, max_bytes: int, timeout_s: float, allow_local: bool
) -> bytes:
    """The bytes at ``url`` for upload ``name``: at most ``max_bytes``, within
    ``timeout_s`` seconds in all (and per network operation)."""
    where = f"upload {name!r} ({url})"
    _check_url(where, url, allow_local)
    opener = urllib.request.build_opener(_Redirects(where, allow_local))
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    deadline = time.monotonic() + timeout_s
    try:
        with opener.open(request, timeout=timeout_s) as response:
            return _read(where, response, max_bytes, deadline, timeout_s)
    except urllib.error.HTTPError as exc:
        raise UploadError(
            f"{where}: the server answered HTTP {exc.code} {exc.reason}; give a URL that "
            "answers the table (200), or send the table inline (UPLOAD=name,param:part)"
        ) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise _timeout(where, timeout_s) from None
        raise UploadError(
            f"{where} could not be fetched: {reason}; check the URL, or send the table "
            "inline (UPLOAD=name,param:part)"
        ) from None
    except TimeoutError:
        raise _timeout(where, timeout_s) from None
    except OSError as exc:
        raise UploadError(
            f"{where} could not be fetched: {exc}; check the URL, or send the table inline"
        ) from None


def _read(where: str, response: IO[bytes], max_bytes: int, deadline: float, t: float) -> bytes:
    headers: Message = getattr(response, "headers", Message())
    length = headers.get("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise _too_large(where, int(length), max_bytes)
    # read1: what has arrived (up to a block), so that a server dribbling bytes meets the
    # deadline between reads instead of holding one read open
    read = getattr(response, "read1", response.read)
    blocks: list[bytes] = []
    size = 0
    while block := read(BLOCK):
        size += len(block)
        if size > max_bytes:
            raise _too_large(where, size, max_bytes, at_least=True)
        if time.monotonic() > deadline:
            raise _timeout(where, t)
        blocks.append(block)
    return b"".join(blocks)


def _too_large(where: str, size: int, limit: int, *, at_least: bool = False) -> UploadError:
    more = "more than " if at_least else ""
    return UploadError(
        f"{where} is {more}{size:,} bytes; the limit of uploads is {limit:,} bytes "
        "(setting upload_max_file_bytes): upload fewer rows or columns"
    )


def _timeout(where: str, seconds: float) -> UploadError:
    return UploadError(
        f"{where} was not fetched within {seconds:g} s; give a URL that answers faster, or "
        "send the table inline (UPLOAD=name,param:part)"
    )


def _check_url(where: str, url: str, allow_local: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise UploadError(
            f"{where}: only http and https URLs are fetched; give one, or send the table "
            "inline (UPLOAD=name,param:part)"
        )
    host = parts.hostname
    if not host:
        raise UploadError(f"{where}: the URL names no host; write e.g. https://host/path")
    if allow_local:
        return
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, ValueError) as exc:
        raise UploadError(f"{where}: the host {host!r} cannot be resolved ({exc})") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global:
            raise UploadError(
                f"{where}: the host {host!r} is on a local or private network ({address}); "
                "the service fetches uploads from public addresses only: send the table "
                "inline (UPLOAD=name,param:part)"
            )


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows at most :data:`MAX_REDIRECTS` redirects, each checked as the first URL."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, where: str, allow_local: bool) -> None:
        super().__init__()
        self.where, self.allow_local = where, allow_local

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        _check_url(self.where, newurl, self.allow_local)
        return super().redirect_request(req, fp, code, msg, headers, newurl)
