"""Fetching public files through the Hugging Face cache (and plain URLs through our own cache), offline-aware.

Every miss becomes one line that names the missing repository or file and the command that fetches it. The
environment is read at call time (``HF_HUB_OFFLINE``, ``HF_HUB_CACHE`` / ``HF_HOME``), not when huggingface_hub
was imported, so a test or a user can point the suite at another cache without restarting Python.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from pathlib import Path
from urllib.error import URLError

from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)

from bench.core.checkpoints import atomic_path
from bench.core.errors import BenchError


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    return home / "hub"


def fetch_hint(repo: str, repo_type: str = "model", filename: str | None = None) -> str:
    kind = " --repo-type dataset" if repo_type == "dataset" else ""
    what = f" {filename}" if filename else ""
    return f"`hf download {repo}{what}{kind}` on a machine with network (HF_HUB_OFFLINE unset)"


def _why(exc: Exception) -> str:
    if isinstance(exc, LocalEntryNotFoundError):
        return "not in the Hugging Face cache " + ("(HF_HUB_OFFLINE is set)" if offline() else "and the hub is "
                                                   "unreachable")
    if isinstance(exc, GatedRepoError):
        return "the repository is gated: accept its terms on the hub and log in with `hf auth login`"
    if isinstance(exc, RepositoryNotFoundError):
        return "no such repository on the hub"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def hub_file(repo: str, filenames: str | tuple[str, ...], repo_type: str = "model", what: str = "") -> Path:
    """The first of ``filenames`` that exists in ``repo``, from the cache or downloaded into it."""
    names = (filenames,) if isinstance(filenames, str) else tuple(filenames)
    last: Exception | None = None
    for name in names:
        try:
            return Path(hf_hub_download(repo, name, repo_type=repo_type, cache_dir=hub_cache_dir(),
                                        local_files_only=offline()))
        except LocalEntryNotFoundError as exc:
            last = exc  # another candidate may be cached
        except EntryNotFoundError as exc:  # the hub answered: this file does not exist there
            last = exc
        except (HfHubHTTPError, OSError, ValueError) as exc:
            raise BenchError(f"cannot fetch {what or repo} from hf-hub:{repo}: {_why(exc)}") from exc
    label = " or ".join(names)
    if isinstance(last, LocalEntryNotFoundError):
        raise BenchError(f"{what or repo}: {label} of hf-hub:{repo} is {_why(last)}; fetch it with "
                         f"{fetch_hint(repo, repo_type, names[0] if len(names) == 1 else None)}") from last
    raise BenchError(f"{what or repo}: hf-hub:{repo} has no file {label}") from last


def hub_snapshot(repo: str, patterns: list[str], repo_type: str = "dataset", what: str = "") -> Path:
    """A local snapshot of the files of ``repo`` matching ``patterns`` (cached, or downloaded now)."""
    try:
        return Path(snapshot_download(repo, repo_type=repo_type, allow_patterns=patterns, cache_dir=hub_cache_dir(),
                                      local_files_only=offline()))
    except (HfHubHTTPError, OSError, ValueError) as exc:
        why = _why(exc)
        hint = f"; fetch it with {fetch_hint(repo, repo_type)}" if "cache" in why else ""
        raise BenchError(f"{what or repo}: hf-hub:{repo} is {why}{hint}") from exc


def cache_root() -> Path:
    """The benchmark's own cache: trained encoders, downloads ($BENCH_CACHE, default ~/.cache/clip-robust-bench)."""
    return Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "clip-robust-bench")


def download_cache_dir() -> Path:
    return cache_root() / "downloads"


def url_file(url: str, what: str = "") -> Path:
    """A file named by URL, downloaded once into ``$BENCH_CACHE/downloads`` (atomically) and reused after."""
    name = Path(urllib.request.url2pathname(url.split("?")[0].rstrip("/").rsplit("/", 1)[-1])).name or "download"
    path = download_cache_dir() / hashlib.sha256(url.encode()).hexdigest()[:16] / name
    if path.is_file():
        return path
    if offline() and not url.startswith("file:"):
        raise BenchError(f"{what or url}: {url} is not in the download cache ({path.parent}) and HF_HUB_OFFLINE is "
                         "set; download it on a machine with network or give a local file path")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_path(path) as tmp, open(tmp, "wb") as fh:
            shutil.copyfileobj(response, fh, length=1 << 20)
    except (URLError, OSError, ValueError) as exc:
        raise BenchError(f"{what or url}: cannot download {url}: {exc}".splitlines()[0]) from exc
    return path
