"""Fixtures shared by the attack tests (imported by name into each module, so pytest finds them there)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Attack tests use small models, where thread hand-offs cost more than they save — on a busy machine up to a
    hundred times more. Module scope, so that module-scoped fixtures (trained models) run under it too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
