"""Probes and metrics, unversioned like every other service's. The probes need no
credentials; the metrics need a viewer's."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import models
from .security import authorize, role, runtime

router = APIRouter(dependencies=[Depends(authorize)])


@router.get("/health/live", openapi_extra=role("public"))
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get(
    "/health/startup",
    openapi_extra=role("public"),
    responses={200: {"model": models.Started}, 503: {"model": models.Started, "description": "Still starting"}},
)
async def startup(request: Request) -> JSONResponse:
    started = getattr(request.app.state, "runtime", None) is not None
    return JSONResponse({"status": "started" if started else "starting"}, status_code=200 if started else 503)


@router.get(
    "/health/ready",
    openapi_extra=role("public"),
    responses={200: {"model": models.Readiness}, 503: {"model": models.Readiness, "description": "A check fails"}},
)
async def ready(request: Request) -> JSONResponse:
    """Redis, PostgreSQL and the services' consumer groups, each with its latency."""
    probes = await runtime(request).client.checks()
    ok = all(p.ok for p in probes.values())
    checks: dict[str, Any] = {
        name: {
            "status": "ok" if p.ok else "failing",
            "latency_ms": p.latency_ms,
            **({"error": p.error.split(":", 1)[0]} if p.error else {}),
        }
        for name, p in probes.items()
    }
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", openapi_extra=role("viewer"), response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
