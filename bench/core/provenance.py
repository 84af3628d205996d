"""What produced a result or a checkpoint, besides its configuration: the code (the commit, and a hash of any
uncommitted change), the versions of the packages that compute numbers, and when. Result cards and training cards
both record it."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from datetime import UTC, datetime
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@lru_cache(maxsize=1)
def git_sha() -> str:
    """The commit of the code that produced a result; with uncommitted changes, ``<sha>+dirty.<hash of the diff>``,
    so two dirty states of one commit are told apart (a stored cell is reused only by the code that made it)."""
    root = Path(__file__).resolve().parents[2]  # the checkout holding bench/, attacks/ and tasks/
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5,
                             check=True).stdout.strip()
        packages = ["--", "bench", "attacks", "tasks"]
        digest = hashlib.sha256(subprocess.run(["git", "diff", "HEAD", *packages], cwd=root, capture_output=True,
                                               timeout=10).stdout)
        untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", *packages], cwd=root,
                                   capture_output=True, text=True, timeout=10).stdout.split()
        for name in sorted(untracked):  # a new module not yet added is a change too
            digest.update(name.encode() + (root / name).read_bytes())
        changed = digest.hexdigest() != hashlib.sha256(b"").hexdigest()
        return sha + (f"+dirty.{digest.hexdigest()[:10]}" if changed else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"  # not a git checkout (an installed package): its version is in versions()


def is_dirty(code_version: str) -> bool:
    return "+dirty" in str(code_version)


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("clip-robust-bench", "torch", "open_clip_torch", "numpy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out
