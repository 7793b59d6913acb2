import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def _single_torch_thread():
    """These tests run tiny tensors; one intra-op thread is faster and does not spin against other CPU jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
