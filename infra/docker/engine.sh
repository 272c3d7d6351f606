#!/usr/bin/env bash
# Prints the container engine to use: $ENGINE if set, else docker when a Docker engine
# answers, else podman when installed. Exits 1 with one line when there is neither.
set -euo pipefail
if [ -n "${ENGINE:-}" ]; then echo "$ENGINE"; exit 0; fi
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker; exit 0; fi
if command -v podman >/dev/null 2>&1; then echo podman; exit 0; fi
echo "no container engine: neither a Docker engine nor podman is available" >&2
exit 1
