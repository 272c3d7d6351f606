#!/usr/bin/env bash
# Builds images with docker, or podman where no Docker engine runs.
# Usage: infra/docker/build-images.sh NAME...   (a service or the api, a folder of services/;
# or redis, postgres, prometheus, nats)
# Environment: BASE_IMAGE (docker.io/library/python:3.11-slim), IMAGE_PREFIX (localhost/alphasaga),
# IMAGE_TAG (latest), CA_BUNDLE (the machine's CA bundle, passed as the build secret `ca`),
# ENGINE (detected).
set -euo pipefail
cd "$(dirname "$0")/../.."
engine=$(infra/docker/engine.sh)
base=${BASE_IMAGE:-docker.io/library/python:3.11-slim}
prefix=${IMAGE_PREFIX:-localhost/alphasaga}
tag=${IMAGE_TAG:-latest}
ca=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
source=$(git config --get remote.origin.url 2>/dev/null || echo unknown)

args=(--build-arg "BASE_IMAGE=$base")
[ -s "$ca" ] && args+=(--secret "id=ca,src=$ca")
# Podman's default OCI format has no HEALTHCHECK; Docker needs BuildKit for secrets and
# cache mounts (the default builder since Docker 23).
[ "$engine" = podman ] && args+=(--format docker)
[ "$engine" = docker ] && export DOCKER_BUILDKIT=1

for name in "$@"; do
  start=$SECONDS
  case "$name" in
    redis | postgres | prometheus | nats)
      "$engine" build "${args[@]}" -f "infra/docker/$name.Dockerfile" -t "$prefix/$name:$tag" . ;;
    *)
      # A service (or the api) is a workspace member under services/.
      [ -f "services/$name/pyproject.toml" ] || { echo "unknown image: $name" >&2; exit 2; }
      version=$(sed -n 's/^version = "\(.*\)"/\1/p' "services/$name/pyproject.toml")
      "$engine" build "${args[@]}" -f infra/docker/service.Dockerfile \
        --build-arg "SERVICE=$name" --build-arg "VERSION=$version" \
        --build-arg "REVISION=$revision" --build-arg "SOURCE=$source" \
        -t "$prefix/$name:$tag" . ;;
  esac
  echo "built $prefix/$name:$tag in $((SECONDS - start)) s" >&2
done
for name in "$@"; do
  printf '%-45s %s\n' "$prefix/$name:$tag" \
    "$("$engine" image inspect --format '{{.Size}}' "$prefix/$name:$tag" | awk '{printf "%.0f MB", $1/1e6}')"
done
