"""clip-robust-bench: adversarial robustness of CLIP image encoders (see README.md).

``bench.evaluate(...)`` (``bench.api``) evaluates any image encoder from Python. Imported on first use, so that
``import bench`` (and every command line) stays cheap.
"""

from __future__ import annotations

import importlib

_LAZY = {"evaluate": "bench.api", "classnames": "bench.api", "api": None, "report": None}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name] or f"bench.{name}")
    return module if _LAZY[name] is None else getattr(module, name)


__all__ = ["evaluate", "classnames"]
