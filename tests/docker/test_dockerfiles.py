"""The Dockerfiles cannot be built here (no Docker engine; `nox -s lint_docker` runs hadolint on them): these
checks catch what hadolint cannot see, namely base images pinned by tag and COPY sources that exist in the build
context and are not excluded from it by .dockerignore."""
from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile*"))


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def ignored(name: str) -> bool:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    return any(fnmatch.fnmatch(name, p.lstrip("/")) for p in patterns if not p.startswith("!"))


def test_the_three_dockerfiles_exist():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile", "Dockerfile.cpu", "Dockerfile.triton"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_base_images_are_pinned_by_tag(path):
    bases = [args.split()[0] for word, args in instructions(path) if word == "FROM"]
    assert bases, path
    for image in bases:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and "$" not in image, image


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_are_in_the_build_context(path):
    args = {}
    for word, rest in instructions(path):
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
        if word == "COPY":
            *sources, _dest = [a for a in rest.split() if not a.startswith("--")]
            for source in sources:
                source = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), source)
                if source == ".":
                    continue
                if source == args.get("MODEL_REPOSITORY"):  # written by deploy.py before the build
                    assert not ignored(source), source
                    continue
                assert (REPO / source).exists(), f"{path.name}: COPY {source}: not in the repository"
                assert not ignored(source), f"{path.name}: COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_the_sources_and_drops_data():
    for kept in ("pyproject.toml", "common", "image_classification", "efficientnet", "gpunet", "triton",
                 "model_repository"):
        assert not ignored(kept), kept
    for dropped in ("data", "runs", ".git", ".nox"):
        assert ignored(dropped), dropped


def test_cpu_image_pins_the_torch_the_project_accepts():
    text = (REPO / "docker" / "Dockerfile.cpu").read_text()
    torch = re.search(r"torch==(\d+)\.(\d+)", text)
    pyproject = (REPO / "pyproject.toml").read_text()
    low = re.search(r'"torch>=(\d+)\.(\d+)"', pyproject)
    assert torch and low and tuple(map(int, torch.groups())) >= tuple(map(int, low.groups()))
    python = re.search(r"FROM python:3\.(\d+)", text)
    required = re.search(r'requires-python = ">=3\.(\d+)"', pyproject)
    assert int(python.group(1)) >= int(required.group(1))
