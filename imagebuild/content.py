"""What an image is made of, as one hash, and the commit it comes from.

An image's content is its bake target as `bake --print` renders it (Dockerfile, context, named contexts,
build args, labels; tags left out), every file of its build contexts, and the base image's ID. Equal hashes
give byte-identical images (see docs in README "Images and builds"), so build.py tags each image
``content-<hash>`` and skips building and pushing one whose tag is already in the registry.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import subprocess
from pathlib import Path

IGNORED_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
# Every file and directory of a build context gets this time before building: BuildKit copies times
# into the layers, and the Dockerfiles give the files they generate the same one (1980-01-01, zip's epoch).
FIXED_MTIME = 315532800
SHORT_SHA = 12


def context_files(context: Path) -> list[Path]:
    """Every file under ``context`` that can reach an image (caches of tests and linters left out)."""
    files = []
    for directory, subdirs, names in os.walk(context):
        subdirs[:] = sorted(d for d in subdirs if d not in IGNORED_DIRS)
        files += [Path(directory) / name for name in sorted(names)]
    return files


def _ignored(relative: str, patterns: list[tuple[bool, str]]) -> bool:
    """.dockerignore's rule for plain patterns: the last pattern matching the path or a parent decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for negated, pattern in patterns:
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            ignored = not negated
    return ignored


def image_files(context: Path) -> list[Path]:
    """The files of ``context`` the build can see: .dockerignore applied; the Dockerfile and it always count."""
    ignore = context / ".dockerignore"
    lines = ignore.read_text().splitlines() if ignore.is_file() else []
    patterns = [(line.startswith("!"), line.lstrip("!").strip().strip("/")) for line in lines
                if line.strip() and not line.startswith("#")]
    return [path for path in context_files(context)
            if path.name in ("Dockerfile", ".dockerignore") or not _ignored(path.relative_to(context).as_posix(),
                                                                            patterns)]


def tree_hash(context: Path) -> str:
    digest = hashlib.sha256()
    for path in image_files(context):
        digest.update(f"{path.relative_to(context).as_posix()}\0{path.stat().st_mode & 0o777:o}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def fix_times(context: Path) -> None:
    """Set every file and directory of ``context`` to :data:`FIXED_MTIME` (content is not touched)."""
    for directory, subdirs, names in os.walk(context, topdown=True):
        subdirs[:] = [d for d in subdirs if d not in IGNORED_DIRS]
        for name in [*names, *subdirs]:
            os.utime(Path(directory) / name, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
    os.utime(context, (FIXED_MTIME, FIXED_MTIME))


def image_hash(target: dict, contexts: dict[str, str], base_image_id: str) -> str:
    """The content hash of a bake target: ``contexts`` maps each context's name to its hash."""
    rendered = {k: v for k, v in target.items() if k not in ("tags", "output")}
    document = {"target": rendered, "contexts": contexts, "base_image": base_image_id}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def base_image_id(image: str) -> str:
    """The local image's ID (its config digest); else the reference itself (then pulled by the build)."""
    done = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", image],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else f"unresolved:{image}"


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def revision(root: Path, paths: list[str]) -> tuple[str, int]:
    """The short sha and commit time of the last commit that changed ``paths`` (``-dirty`` when they differ
    from it now); ('', 0) outside git. An image's labels come from it, so unchanged images keep theirs."""
    line = _git(root, "log", "-1", "--format=%H %ct", "--", *paths)
    if not line:
        return "", 0
    full, seconds = line.split()
    sha = full[:SHORT_SHA]  # a fixed length: git's own abbreviation grows with the repository
    dirty = _git(root, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    return (f"{sha}-dirty" if dirty else sha), int(seconds)
