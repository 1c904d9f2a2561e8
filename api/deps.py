"""Dependencies of the routes: the service, and TAP parameters read the DALI way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import UploadFile

from qserv_py.api.forms import read_form
from qserv_py.api.service import Service
from qserv_py.errors import QueryRefused


def get_service(request: Request) -> Service:
    """The process's :class:`Service` (made in the app's lifespan)."""
    service: Service = request.app.state.service
    return service


@dataclass
class TapParams:
    """The parameters of a DALI request: names case-insensitive (kept lower-case), values
    as given; a parameter given twice keeps every value. Multipart file parts (the
    targets of ``UPLOAD=name,param:part``) are in ``files`` by part name."""

    values: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)

    def get(self, name: str, default: str | None = None) -> str | None:
        found = self.values.get(name.lower())
        return found[-1] if found else default

    def all(self, name: str) -> list[str]:
        return list(self.values.get(name.lower(), []))

    def int(self, name: str) -> int | None:
        value = self.get(name)
        if value is None or value.strip() == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise QueryRefused(f"{name.upper()}={value!r} is not an integer") from None

    def flag(self, name: str) -> bool:
        """A boolean parameter (true/false, yes/no, 1/0; absent: false)."""
        value = self.get(name)
        if value is None or value.strip() == "":
            return False
        found = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        key = value.strip().lower()
        if key not in found:
            raise QueryRefused(f"{name.upper()}={value!r} is not a boolean; give true or false")
        return found[key]

    def add(self, name: str, value: str) -> None:
        self.values.setdefault(name.lower(), []).append(value)


async def tap_params(request: Request) -> TapParams:
    """Parameters from the query string and, for POST, the form (urlencoded or multipart)."""
    params = TapParams()
    for name, value in request.query_params.multi_items():
        params.add(name, value)
    if request.method == "POST":
        kind = request.headers.get("content-type", "")
        if kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            limit = get_service(request).settings.upload_max_file_bytes
            form = await read_form(request, limit, max_files=100, max_fields=1000)
            for name, item in form.multi_items():
                if isinstance(item, UploadFile):
                    params.files[name] = await item.read()
                else:
                    params.add(name, item)
    return params


#: route parameter types (FastAPI's Annotated style)
ServiceDep = Annotated[Service, Depends(get_service)]
ParamsDep = Annotated[TapParams, Depends(tap_params)]
