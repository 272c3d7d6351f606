#!/usr/bin/env bash
# A base image made from Debian's packages, for machines that reach Debian's archive but
# no image registry: Debian 12 with its Python 3.11, venv and apt, nothing else.
# Usage: infra/docker/base-image.sh ENGINE TAG   (run as root: mmdebstrap needs it here)
set -euo pipefail
engine=${1:?engine (docker or podman)}
tag=${2:?image tag}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Documentation, manuals and translations are a third of a minimal system and no service
# reads them; apt's lists are fetched again by any build step that installs.
mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  bookworm "$work/base.tar" \
  "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main"
"$engine" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$work/base.tar" "$tag" >/dev/null
echo "base image $tag: $("$engine" image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
