# AlphaSaga. `make run` runs one research saga end to end; `make test` runs the suite.
# A fresh clone needs only Python 3.11+ and the package registry: uv is bootstrapped
# with pip into .tools/ when it is not on PATH.

SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
RUN := $(UV) run --frozen
# Trust the platform's certificate store (corporate proxies, private CAs); older uv
# versions spell it UV_NATIVE_TLS.
export UV_SYSTEM_CERTS ?= 1
export UV_NATIVE_TLS ?= 1

.PHONY: help sync peers run up test test-fast lint format schemas manifests bench soak chaos clean base-image images infra-images container-test certs compose-secrets

help:
	@echo "make run     - start every service (embedded Redis/Postgres unless URLs are set), run one saga, stop"
	@echo "make up      - start every service in the foreground until Ctrl-C"
	@echo "make test    - lint, type-check and run the test suite against real Redis and Postgres"
	@echo "make lint    - ruff and mypy"
	@echo "make bench   - benchmarks, AlphaSaga beside Restate and DBOS first; results go to docs/benchmarks.md by hand"
	@echo "make peers   - install the peers group (Restate's SDK, DBOS) that make bench uses"
	@echo "make soak    - long load and soak tests (not run by make test or CI)"
	@echo "make chaos   - database sessions cut, PostgreSQL crashed, Redis stopped, a JetStream node killed under load (not run by make test or CI)"
	@echo "make images  - one image per service, with docker or (no Docker engine) podman"
	@echo "make manifests - write the deployment files that list the services (compose, k8s, prometheus)"
	@echo "make compose-secrets - each service's login for compose in .secrets/ (TLS=1: for docker-compose.tls.yml)"
	@echo "make certs   - a local CA and a Redis/PostgreSQL certificate in .tls/ (TLS runs; never committed)"
	@echo "make base-image - a base image from Debian's packages, for machines without a registry"
	@echo "make container-test - the services as containers: a saga, a killed ml, a stopped codegen"

$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet --disable-pip-version-check uv

# Bytecode is installed with the packages: a sandboxed strategy run starts a fresh
# interpreter that cannot write it, and compiling pandas costs it seconds every time.
# The peers group (Restate, DBOS) is for `make bench` alone: tests need none of it.
.venv/.synced: Makefile uv.lock pyproject.toml $(wildcard */pyproject.toml services/*/pyproject.toml) | $(UV)
	$(UV) sync --frozen --all-groups --no-group peers --compile-bytecode
	@touch $@

# Each time (quick when nothing changed, and it notices a group removed since), and never
# fatal: a bench without its peers still measures AlphaSaga.
peers: sync
	@$(UV) sync --frozen --all-groups --quiet \
		|| echo "bench: the peers group (Restate, DBOS) could not be installed; the bench runs without peers"

# The project's own packages are installed editable, out of --compile-bytecode's reach:
# where PYTHONDONTWRITEBYTECODE is set, every command-line call compiled them again, 40 ms
# of a status's 0.33 s (docs/benchmarks.md, issue #25). Quick when they are up to date.
SOURCES := $(wildcard */src services/*/src)
sync: .venv/.synced
	@$(RUN) --no-sync python -m compileall -q $(SOURCES) > /dev/null

run: sync
	$(RUN) alphasaga run

up: sync
	$(RUN) alphasaga up

lint: sync
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy contracts/src shared/src saga/src readmodel/src accounts/src client/src services/*/src cli/src bench infra/manifests.py

format: sync
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

# Four workers, a test file each at a time (a file's module-scoped stack stays on one):
# most tests wait on real processes and servers, so workers beyond the two cores fill them
# while others wait (6 min 04 s with three, 5 min 10 s to 5 min 50 s with four, quiet;
# docs/benchmarks.md).
# Every test isolates itself (its own stream namespace and schema).
test: lint
	$(RUN) pytest -n 4 --dist loadfile -m "not slow and not chaos and not containers"

test-fast: sync
	$(RUN) pytest -m "not slow and not chaos and not containers" -x -q

schemas: sync
	$(RUN) python -m alphasaga_contracts.schema_export

# The deployment files that list the services and kinds (infra/manifests.py says which).
manifests: sync
	$(RUN) python infra/manifests.py

bench: sync peers
	$(RUN) python -m bench

soak: sync
	$(RUN) pytest -m slow -s

# The JetStream cluster test starts its three nodes from the NATS image (testcontainers).
chaos: sync
	infra/docker/build-images.sh nats
	$(RUN) pytest -m chaos -s
# Images (docs/deployment.md). BASE_IMAGE=$(LOCAL_BASE) where no registry is reachable,
# after `make base-image`. The services come from alphasaga_contracts.steps, read when used.
SERVICES = $(shell $(RUN) python infra/manifests.py services)
LOCAL_BASE := localhost/alphasaga/base:bookworm
export BASE_IMAGE ?= docker.io/library/python:3.11-slim
export IMAGE_PREFIX ?= localhost/alphasaga
export IMAGE_TAG ?= latest

# A local CA and a certificate for Redis and PostgreSQL in .tls/ (git-ignored; TLS_DIR=… elsewhere):
# compose's TLS variant and the container test use them (docs/deployment.md, "TLS").
TLS_DIR ?= .tls
certs:
	infra/tls/make-certs.sh $(TLS_DIR)

# The logins compose runs with, in .secrets/ (git-ignored): TLS=1 for docker-compose.tls.yml.
compose-secrets: sync
	$(RUN) python infra/compose_secrets.py $(if $(TLS),--tls)

base-image:
	infra/docker/base-image.sh "$$(infra/docker/engine.sh)" $(LOCAL_BASE)

images: sync
	infra/docker/build-images.sh $(SERVICES) api

# Redis, PostgreSQL, Prometheus and NATS from Debian's packages on BASE_IMAGE, for compose
# and the container tests where the official images cannot be pulled.
infra-images:
	infra/docker/build-images.sh redis postgres prometheus nats

# The test starts what docker-compose.yml + docker-compose.tls.yml describe, through
# testcontainers; without a Docker engine it starts Podman's API socket itself
# (tests/support/podman_socket.py). Ryuk's image is on Docker Hub: off, the test cleans up.
container-test: sync
	infra/docker/build-images.sh redis postgres $(SERVICES) api
	TESTCONTAINERS_RYUK_DISABLED=$${TESTCONTAINERS_RYUK_DISABLED:-true} $(RUN) pytest -m containers tests/containers -v

clean:
	rm -rf .venv .tools .alphasaga .mypy_cache .ruff_cache .pytest_cache
