"""Shared pytest fixtures."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Tiny models: one torch thread is faster and immune to OpenMP spin-waits on a busy 2-core box."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
