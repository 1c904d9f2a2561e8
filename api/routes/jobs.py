"""TAP async: UWS 1.1 jobs (to be written)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

router = APIRouter()


async def start(app: FastAPI) -> None:
    """Start the job runner (the lifespan calls this after the service is made)."""


async def stop(app: FastAPI) -> None:
    """Stop the job runner."""
