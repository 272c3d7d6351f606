"""The saga explorer: HTML pages served by the api service under ``/explorer``, over the
same use cases as the HTTP API (``alphasaga_client.usecases``), so that who may cancel or
redrive is decided in one place. Server-rendered templates, a little hand-written
JavaScript, charts drawn here as SVG; no build step (docs/explorer.md)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"


def install(app: FastAPI) -> None:
    """The explorer's pages and its stylesheet and script, on the api's app."""
    from .pages import router

    app.include_router(router)
    app.mount("/explorer/static", StaticFiles(directory=STATIC), name="explorer-static")
