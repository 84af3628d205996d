"""The scripts under scripts/ (not a package), loaded as modules for the tests that exercise them."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@cache
def load_script(name: str):
    """scripts/<name>.py as the module ``name`` (loaded once per test process)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
