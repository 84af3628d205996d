"""Reading and writing weights safely: tensors only, atomically, with content hashes.

Checkpoints may come from the internet. ``torch.load`` on an arbitrary pickle runs arbitrary code, so everything
here loads through safetensors or ``torch.load(weights_only=True)``, and a file that needs more than tensors is
refused with a clear message instead of being executed.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from bench.core.errors import BenchError


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step, on failure it vanishes.

    Readers therefore see either the old file or the whole new one, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; results and checkpoints are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    """Save a flat dict of tensors as safetensors, atomically. Returns the file's sha256."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
    return sha256_file(path)


def load_tensors(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a dict of tensors from safetensors or a tensors-only torch pickle; refuse anything else."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"checkpoint not found: {path}")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise BenchError(f"checkpoint {path} has sha256 {actual[:12]}…, but its card records "
                             f"{expected_sha256[:12]}…; the file is corrupt or was replaced")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise BenchError(f"cannot read checkpoint {path}: not a valid safetensors file ({exc})") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise BenchError(f"refusing to load {path}: it contains pickled Python objects, not only tensors "
                         "(loading it could run arbitrary code); convert it to safetensors from a trusted "
                         "environment") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise BenchError(f"cannot read checkpoint {path}: {exc}".splitlines()[0]) from exc
    return _flatten_tensor_dict(obj, path)


def _flatten_tensor_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap the common nestings ({'state_dict': ...}, {'vision_encoder_state_dict': ...}) to a flat tensor dict."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "vision_encoder_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                return _flatten_tensor_dict(obj[key], path)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    raise BenchError(f"checkpoint {path} does not hold a state dict of tensors")
