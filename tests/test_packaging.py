"""pyproject.toml, LICENSE and NOTICE: the licence and the credits, extras that match PyPI's torch, bounds on the
pre-1.0 dependencies whose APIs the code is written against, and a torch floor that the suites ran on."""
from __future__ import annotations

import re

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import REPO

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11's")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def requirements() -> list[Requirement]:
    extras = PYPROJECT["optional-dependencies"].values()
    return [Requirement(r) for r in PYPROJECT["dependencies"] + [r for group in extras for r in group]]


def test_licence_files():
    assert PYPROJECT["license"] == "Apache-2.0"
    assert set(PYPROJECT["license-files"]) == {"LICENSE", "NOTICE"}
    licence = (REPO / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "END OF TERMS AND CONDITIONS" in licence
    notice = (REPO / "NOTICE").read_text()
    # ConvNets' BSD 3-Clause notice, with its conditions and disclaimer; GPUNet's (Apache-2.0, NVIDIA); timm's.
    assert "Copyright (c) 2018-2019, NVIDIA CORPORATION" in notice
    assert "Neither the name of the copyright holder nor the names of its" in notice
    assert "EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE" in notice
    assert "PyTorch/Classification/GPUNet" in notice and "Copyright 2022 NVIDIA Corporation" in notice
    assert "Copyright 2019 Ross Wightman" in notice
    for derived in ("efficientnet/configs.yml", "gpunet/train_params", "image_classification/models/gpunet_archs.py"):
        assert derived in notice, derived
        assert (REPO / derived).exists(), derived


def test_dali_extras_match_the_cuda_builds():
    extras = PYPROJECT["optional-dependencies"]
    assert extras["dali"] == ["nvidia-dali-cuda130"]  # PyPI's torch wheels are CUDA 13 builds
    assert extras["dali-cu12"] == ["nvidia-dali-cuda120"]
    # The GPU image is a CUDA 13 NGC container (the torch floor, 2.11, rules out 25.06's 2.8): its DALI is the
    # CUDA 13 build.
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "nvcr.io/nvidia/pytorch:26.10" in dockerfile and ".[dali," in dockerfile


def test_torch_floor():
    torch = next(r for r in requirements() if r.name == "torch")
    assert torch.specifier.contains("2.11.0") and not torch.specifier.contains("2.10.0")


def test_pre_1_0_dependencies_have_an_upper_bound():
    """A pre-1.0 package may change its API in any minor release: each one the code calls into is capped.
    torchvision is the exception: it is released in lockstep with torch (torchvision 0.26 goes with torch 2.11)."""
    for req in requirements():
        if req.name == "torchvision":
            continue
        floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
        if floors and floors[0].major == 0:
            assert any(s.operator in ("<", "==", "~=") for s in req.specifier), f"{req} has no upper bound"
    modelopt = next(r for r in requirements() if r.name == "nvidia-modelopt")
    assert modelopt.specifier.contains("0.47.0") and not modelopt.specifier.contains("0.48.0")


def test_noxfile_installs_the_dali_extra():
    noxfile = (REPO / "noxfile.py").read_text()
    assert re.search(r'session\.install\("-e", "\.\[dev,dali\]"\)', noxfile)
    assert "nvidia-dali-cuda120" not in noxfile
