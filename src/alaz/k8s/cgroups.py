"""Processes -> cgroups -> containers: parse `/proc/<pid>/cgroup`, find cgroup v2 ids.

The kernel tags every captured record with the process's cgroup v2 id
(`bpf_get_current_cgroup_id`), which is the inode number of the cgroup's directory under the v2
mount. A container runtime names that directory after the container, and the kubelet names its
parent after the pod, so the path alone tells container id and pod uid:

    containerd, systemd driver  /kubepods.slice/kubepods-burstable.slice/
                                  kubepods-burstable-pod<uid_with_underscores>.slice/
                                  cri-containerd-<64hex>.scope
    containerd, cgroupfs driver /kubepods/burstable/pod<uid>/<64hex>
    containerd, cgroup v1 + systemd  .../kubepods-burstable-pod<uid>.slice:cri-containerd:<64hex>
    CRI-O                       .../crio-<64hex>.scope    (crio-conmon-<64hex>.scope is the monitor)
    Docker                      .../docker-<64hex>.scope, /docker/<64hex>
    Podman                      .../libpod-<64hex>.scope
    kind (nested kubelet)       /kubelet.slice/kubelet-kubepods.slice/... same leaves

`/proc/<pid>/cgroup` has one `0::<path>` line for cgroup v2 and `N:<controllers>:<path>` lines
for v1 hierarchies (hybrid hosts have both). Paths seen through a cgroup namespace may start
with `/..`; the container id and pod uid still parse, but the v2 id must then come from the
kernel (exec events carry it) or from scanning the v2 tree (`scan`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "CgroupLine",
    "ContainerCgroup",
    "container_of",
    "find_v2_mount",
    "identify",
    "parse_proc_cgroup",
    "pod_uid_of",
    "read_proc_cgroup",
    "scan",
    "v2_id",
    "v2_path",
]

_HEX64 = r"[0-9a-f]{64}"
# The last component naming a container, per runtime. Order matters: conmon before crio.
_LEAF_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("crio-conmon", re.compile(rf"^crio-conmon-({_HEX64})(?:\.scope)?$")),
    ("containerd", re.compile(rf"^cri-containerd-({_HEX64})\.scope$")),
    ("containerd", re.compile(rf":cri-containerd:({_HEX64})$")),
    ("crio", re.compile(rf"^crio-({_HEX64})(?:\.scope)?$")),
    ("docker", re.compile(rf"^docker-({_HEX64})\.scope$")),
    ("podman", re.compile(rf"^libpod-({_HEX64})(?:\.scope)?$")),
    ("", re.compile(rf"^({_HEX64})$")),  # cgroupfs driver: the bare id (runtime from the parent)
)
_POD_UID = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})"
    r"(?:\.slice)?(?:[:/]|$)"
)
_V2_CANDIDATES = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")


class CgroupLine(NamedTuple):
    """One line of `/proc/<pid>/cgroup`."""

    hierarchy: int  # 0 for cgroup v2
    controllers: str  # "" for v2; "memory", "cpu,cpuacct", "name=systemd", ...
    path: str


class ContainerCgroup(NamedTuple):
    """What a cgroup path says about its process."""

    runtime: str  # containerd, crio, docker, podman ("" when the path does not tell)
    container_id: str  # 64 hex digits
    pod_uid: str  # "" outside Kubernetes (plain Docker); dashes restored
    path: str  # the path the ids came from


def parse_proc_cgroup(text: str) -> list[CgroupLine]:
    """Split `/proc/<pid>/cgroup` text into its lines; malformed lines are skipped."""
    lines = []
    for raw in text.splitlines():
        hierarchy, sep1, rest = raw.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not (sep1 and sep2) or not hierarchy.isdigit():
            continue
        lines.append(CgroupLine(int(hierarchy), controllers, path))
    return lines


def container_of(path: str) -> tuple[str, str] | None:
    """(runtime, container id) named by the deepest matching component of `path`, or None.

    The conmon monitor of CRI-O is not the container, so its path gives None.
    """
    for part in reversed(path.split("/")):
        for runtime, pattern in _LEAF_PATTERNS:
            found = pattern.search(part)
            if found is None:
                continue
            if runtime == "crio-conmon":
                return None
            return (runtime or _runtime_from_path(path)), found.group(1)
    return None


def pod_uid_of(path: str) -> str:
    """The pod uid in a kubelet cgroup path ("" when there is none), with dashes."""
    found = _POD_UID.search(path)
    return found.group(1).replace("_", "-") if found else ""


def identify(text: str) -> ContainerCgroup | None:
    """The container of a process from its `/proc/<pid>/cgroup` text (v2 first, then v1)."""
    lines = parse_proc_cgroup(text)
    lines.sort(key=_line_preference)
    for line in lines:
        found = container_of(line.path)
        if found is not None:
            return ContainerCgroup(found[0], found[1], pod_uid_of(line.path), line.path)
    return None


def v2_path(text: str) -> str | None:
    """The cgroup v2 path of a process (the `0::` line), or None."""
    for line in parse_proc_cgroup(text):
        if line.hierarchy == 0 and line.controllers == "":
            return line.path
    return None


def read_proc_cgroup(pid: int, proc: str = "/proc") -> str | None:
    """`/proc/<pid>/cgroup` text, or None when the process is gone."""
    try:
        with open(f"{proc}/{pid}/cgroup") as f:
            return f.read()
    except OSError:
        return None


def find_v2_mount(mountinfo: str | None = None) -> str | None:
    """Where the cgroup v2 hierarchy is mounted: from mountinfo text, else the usual places."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            mountinfo = ""
    for line in mountinfo.splitlines():
        pre, sep, post = line.partition(" - ")
        fields = pre.split()
        if sep and post.split()[:1] == ["cgroup2"] and len(fields) >= 5:
            return fields[4]
    for candidate in _V2_CANDIDATES:
        if os.path.exists(f"{candidate}/cgroup.controllers"):
            return candidate
    return None


def v2_id(mount: str, path: str) -> int | None:
    """The cgroup v2 id of `path` (the inode of its directory under `mount`), or None.

    Paths relative to another cgroup namespace (`/../..`) and the root cgroup give None.
    """
    if not path.startswith("/") or path == "/" or "/.." in path:
        return None
    try:
        return os.stat(mount + path).st_ino
    except OSError:
        return None


def scan(
    mount: str, max_depth: int = 12, max_dirs: int = 200_000
) -> Iterator[tuple[int, ContainerCgroup]]:
    """Walk the v2 tree under `mount`: (cgroup id, container) for every container cgroup.

    Bounded by `max_depth` levels and `max_dirs` directories visited.
    """
    budget = max_dirs
    stack: list[tuple[str, int]] = [("", 0)]
    while stack and budget > 0:
        rel, depth = stack.pop()
        try:
            entries = list(os.scandir(mount + rel if rel else mount))
        except OSError:
            continue
        for entry in entries:
            if budget <= 0:
                break
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                budget -= 1
                child = f"{rel}/{entry.name}"
                found = container_of(entry.name)
                if found is not None:
                    yield (
                        entry.inode(),
                        ContainerCgroup(found[0], found[1], pod_uid_of(child), child),
                    )
                elif depth + 1 < max_depth:
                    stack.append((child, depth + 1))
            except OSError:
                continue


def _line_preference(line: CgroupLine) -> int:
    if line.hierarchy == 0 and line.controllers == "":
        return 0
    if "memory" in line.controllers.split(","):
        return 1
    if line.controllers == "name=systemd":
        return 2
    return 3


def _runtime_from_path(path: str) -> str:
    # A bare id does not name its runtime; only Docker's own cgroupfs layout says who it is.
    return "docker" if path.startswith("/docker/") or "/docker/" in path else ""
