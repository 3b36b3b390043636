"""cgroup paths of every runtime layout -> container id, pod uid; v2 ids; the tree scan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alaz.k8s.cgroups import (
    container_of,
    find_v2_mount,
    identify,
    parse_proc_cgroup,
    pod_uid_of,
    scan,
    v2_id,
    v2_path,
)

CID = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899"
UID = "8a5f4c53-7a1b-4c2e-9f4e-123456789abc"
UID_ = UID.replace("-", "_")

# Real-looking /proc/<pid>/cgroup texts, one per runtime and cgroup layout.
FIXTURES: dict[str, tuple[str, str, str]] = {
    # name: (text, runtime, pod uid)
    "containerd v2 systemd": (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/"
        f"cri-containerd-{CID}.scope\n",
        "containerd",
        UID,
    ),
    "containerd v2 systemd guaranteed": (
        f"0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope\n",
        "containerd",
        UID,
    ),
    "containerd v2 cgroupfs": (
        f"0::/kubepods/besteffort/pod{UID}/{CID}\n",
        "",
        UID,
    ),
    "kind nested kubelet": (
        f"0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
        f"kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope\n",
        "containerd",
        UID,
    ),
    "containerd v1 cgroupfs (hybrid)": (
        f"12:pids:/kubepods/burstable/pod{UID}/{CID}\n"
        f"11:memory:/kubepods/burstable/pod{UID}/{CID}\n"
        f"10:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n"
        f"1:name=systemd:/kubepods/burstable/pod{UID}/{CID}\n"
        "0::/\n",
        "",
        UID,
    ),
    "containerd v1 systemd slice:prefix:id": (
        f"11:memory:/system.slice/containerd.service/kubepods-burstable-pod{UID_}.slice"
        f":cri-containerd:{CID}\n"
        f"1:name=systemd:/system.slice/containerd.service/kubepods-burstable-pod{UID_}.slice"
        f":cri-containerd:{CID}\n",
        "containerd",
        UID,
    ),
    "cri-o v2": (
        f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/"
        f"crio-{CID}.scope\n",
        "crio",
        UID,
    ),
    "cri-o v1 cgroupfs": (
        f"9:memory:/kubepods/besteffort/pod{UID}/crio-{CID}\n0::/\n",
        "crio",
        UID,
    ),
    "docker via cri-dockerd v2": (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/"
        f"docker-{CID}.scope\n",
        "docker",
        UID,
    ),
    "docker plain systemd": (f"0::/system.slice/docker-{CID}.scope\n", "docker", ""),
    "docker plain cgroupfs v1": (
        f"12:memory:/docker/{CID}\n11:cpu,cpuacct:/docker/{CID}\n0::/\n",
        "docker",
        "",
    ),
    "docker with systemd inside": (
        f"0::/system.slice/docker-{CID}.scope/init.scope\n",
        "docker",
        "",
    ),
    "podman": (f"0::/machine.slice/libpod-{CID}.scope/container\n", "podman", ""),
    "cgroup namespace relative": (
        f"0::/../../kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope\n",
        "containerd",
        UID,
    ),
    "static pod (hash uid)": (
        f"0::/kubepods.slice/kubepods-burstable.slice/"
        f"kubepods-burstable-pod{'0123456789abcdef' * 2}.slice/cri-containerd-{CID}.scope\n",
        "containerd",
        "0123456789abcdef" * 2,
    ),
}


@pytest.mark.parametrize("name", list(FIXTURES))
def test_identify_every_runtime_layout(name: str) -> None:
    text, runtime, pod_uid = FIXTURES[name]
    found = identify(text)
    assert found is not None, name
    assert found.container_id == CID
    assert found.runtime == runtime
    assert found.pod_uid == pod_uid


@pytest.mark.parametrize(
    "text",
    [
        "0::/\n",
        "0::/user.slice/user-0.slice/session-1.scope\n",
        "0::/system.slice/sshd.service\n",
        f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice\n",
        f"0::/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{CID}.scope\n",
        f"0::/kubepods/burstable/pod{UID}/{CID[:-1]}\n",  # 63 hex digits: not an id
        "garbage\n\n:::\n",
        "",
    ],
)
def test_non_container_cgroups(text: str) -> None:
    assert identify(text) is None


def test_v2_line_is_preferred_over_v1() -> None:
    other = "1" * 64
    text = f"4:memory:/docker/{other}\n0::/kubepods/pod{UID}/{CID}\n"
    found = identify(text)
    assert found is not None and found.container_id == CID


def test_parse_lines_and_v2_path() -> None:
    lines = parse_proc_cgroup("12:cpu,cpuacct:/a\n1:name=systemd:/b\n0::/c\nbad line\n")
    assert [(x.hierarchy, x.controllers, x.path) for x in lines] == [
        (12, "cpu,cpuacct", "/a"),
        (1, "name=systemd", "/b"),
        (0, "", "/c"),
    ]
    assert v2_path("12:memory:/a\n0::/c\n") == "/c"
    assert v2_path("12:memory:/a\n") is None


def test_container_of_and_pod_uid_of() -> None:
    assert container_of(f"/a/cri-containerd-{CID}.scope") == ("containerd", CID)
    assert container_of("/a/b") is None
    assert pod_uid_of(f"/kubepods/pod{UID}/x") == UID
    assert pod_uid_of("/kubepods/besteffort") == ""
    # "pod" inside another word with a uid-like tail must still need the uid shape.
    assert pod_uid_of("/system.slice/podman.service") == ""


# /proc/self/mountinfo of a hybrid host (abridged).
MOUNTINFO_HYBRID = """\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
33 25 0:27 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 33 0:28 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
35 33 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
"""
MOUNTINFO_UNIFIED = """\
30 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
34 25 0:28 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
"""


def test_find_v2_mount_from_mountinfo() -> None:
    assert find_v2_mount(MOUNTINFO_HYBRID) == "/sys/fs/cgroup/unified"
    assert find_v2_mount(MOUNTINFO_UNIFIED) == "/sys/fs/cgroup"


def test_v2_id_is_the_directory_inode(tmp_path: Path) -> None:
    leaf = tmp_path / "kubepods" / f"pod{UID}" / CID
    leaf.mkdir(parents=True)
    assert v2_id(str(tmp_path), f"/kubepods/pod{UID}/{CID}") == os.stat(leaf).st_ino
    assert v2_id(str(tmp_path), "/missing") is None
    assert v2_id(str(tmp_path), "/") is None
    assert v2_id(str(tmp_path), "/../x") is None


def test_scan_finds_container_cgroups_only(tmp_path: Path) -> None:
    pod_dir = tmp_path / "kubepods.slice" / "kubepods-besteffort.slice"
    pod_dir = pod_dir / f"kubepods-besteffort-pod{UID_}.slice"
    c1 = pod_dir / f"cri-containerd-{CID}.scope"
    c2 = pod_dir / f"cri-containerd-{'2' * 64}.scope"
    conmon = pod_dir / f"crio-conmon-{'3' * 64}.scope"
    for d in (c1, c2, conmon, tmp_path / "system.slice" / "sshd.service"):
        d.mkdir(parents=True)
    (c1 / "cgroup.procs").write_text("")
    found = {entry.container_id: (ino, entry) for ino, entry in scan(str(tmp_path))}
    assert {e.container_id for _, e in found.values()} == {CID, "2" * 64}
    ino, entry = next(v for v in found.values() if v[1].container_id == CID)
    assert ino == os.stat(c1).st_ino
    assert entry.pod_uid == UID
    assert entry.path.endswith(f"cri-containerd-{CID}.scope")


def test_scan_is_bounded(tmp_path: Path) -> None:
    deep = tmp_path
    for i in range(20):
        deep = deep / f"d{i}"
    (deep / CID).mkdir(parents=True)
    assert list(scan(str(tmp_path), max_depth=5)) == []
    assert len(list(scan(str(tmp_path), max_depth=30))) == 1
    assert list(scan(str(tmp_path), max_dirs=3)) == []
