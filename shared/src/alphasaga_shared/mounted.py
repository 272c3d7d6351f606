"""Secrets as a container platform mounts them: one file per key in a directory (a
Kubernetes Secret's volume, a compose bind mount, ``alphasaga acl render --passwords``)."""

from __future__ import annotations

from pathlib import Path


def read_secret_files(directory: Path) -> dict[str, str]:
    """Each file's stripped text by its name; dot files (a mounted Secret's ``..data``) are
    skipped. ValueError names a missing directory or an empty file."""
    if not directory.is_dir():
        raise ValueError(f"{directory}: not a directory")
    found = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            value = path.read_text().strip()
            if not value:
                raise ValueError(f"{path} is empty")
            found[path.name] = value
    return found
