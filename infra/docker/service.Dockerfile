# One image per service, from this one file (`make images` builds them all):
#   docker build -f infra/docker/service.Dockerfile --build-arg SERVICE=ml -t alphasaga/ml .
#   podman build --format docker -f infra/docker/service.Dockerfile --build-arg SERVICE=ml ...
# `--format docker` on Podman: the OCI image format has no HEALTHCHECK.
#
# BASE_IMAGE is any Debian-like image with Python 3.11 and apt: the official slim image by
# default, or on a machine without an image registry the base that `make base-image`
# builds from Debian's packages (docs/deployment.md).
#
# A private CA (a proxy in front of the package index) comes in as the build secret `ca`,
# used by the steps that download and never stored in a layer:
#   --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt
ARG BASE_IMAGE=docker.io/library/python:3.11-slim

# The workspace's metadata alone: the lock and every member's pyproject.toml, whatever the
# members are. The build stage copies it before the sources, so that its dependency layer
# is rebuilt only when the metadata changes: a copy's cache key is its content, and the
# times are fixed so that no engine can see a difference where there is none.
FROM ${BASE_IMAGE} AS metadata
COPY . /src
RUN set -eu; \
    mkdir /metadata; \
    cd /src; \
    cp uv.lock /metadata/; \
    find . -name pyproject.toml -not -path './.*' -exec cp --parents {} /metadata/ \; ; \
    find /metadata -exec touch -h -d @0 {} +

FROM ${BASE_IMAGE} AS build
ARG SERVICE
ARG UV_VERSION=0.13.9
ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3
# uv from PyPI into a venv of its own: works whether the base's Python has pip or not.
RUN --mount=type=secret,id=ca,required=false \
    set -eu; \
    test -n "${SERVICE}" || { echo "build arg SERVICE is required" >&2; exit 2; }; \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    python3 -m venv /opt/uv; \
    /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check --quiet "uv==${UV_VERSION}"
WORKDIR /src
# The workspace's metadata first: the dependency layer is rebuilt only when it changes.
COPY --from=metadata /metadata/ ./
# Only this service's locked dependencies (LightGBM comes with ml alone); no dev tools
# and no embedded servers, which are an extra of shared that no service asks for.
RUN --mount=type=secret,id=ca,required=false \
    --mount=type=cache,target=/root/.cache/uv \
    set -eu; \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    /opt/uv/bin/uv sync --frozen --no-dev --no-install-workspace --package "alphasaga-${SERVICE}"
COPY contracts/src contracts/src
COPY shared/src shared/src
# The saga's domain and the read model (the orchestrator and the client); accounts and the
# client API (the api).
COPY saga/src saga/src
COPY readmodel/src readmodel/src
COPY accounts/src accounts/src
COPY client/src client/src
COPY services services
# The workspace members themselves, built as wheels (hatchling comes from the index).
RUN --mount=type=secret,id=ca,required=false \
    --mount=type=cache,target=/root/.cache/uv \
    set -eu; \
    if [ -s /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi; \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --package "alphasaga-${SERVICE}"; \
    printf '#!/bin/sh\nexec /app/.venv/bin/python -m alphasaga_%s "$@"\n' "${SERVICE}" > /app/service; \
    chmod 0755 /app/service

FROM ${BASE_IMAGE}
ARG SERVICE
# tini reaps what codegen's sandbox leaves behind and passes SIGTERM on; ml's LightGBM
# needs OpenMP; codegen's sandbox needs bubblewrap (production accepts no other) and
# filters system calls through libseccomp.
RUN set -eu; \
    pkgs=tini; \
    case "${SERVICE}" in ml) pkgs="$pkgs libgomp1" ;; codegen) pkgs="$pkgs bubblewrap libseccomp2" ;; esac; \
    apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    echo "alphasaga:x:10001:10001:alphasaga:/nonexistent:/usr/sbin/nologin" >> /etc/passwd; \
    echo "alphasaga:x:10001:" >> /etc/group
COPY --from=build /app /app
# Nothing is written outside /tmp, so the root filesystem can be read-only.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    ALPHASAGA_ENV=production \
    ALPHASAGA_HTTP_PORT=8000
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('ALPHASAGA_HTTP_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["/usr/bin/tini", "--", "/app/service"]
# Last: the revision changes with every commit and would otherwise rebuild the layers above.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="alphasaga-${SERVICE}" \
      org.opencontainers.image.description="AlphaSaga ${SERVICE} service" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}"
