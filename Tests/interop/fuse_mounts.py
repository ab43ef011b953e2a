"""bindfs mounts standing in for a network file system (../shared/reference/shared-filesystems.md): one backing
folder B, one mount of it per "node". Writes made into B (or through another mount) raise no inotify event on a
mount, exactly as on NFS with the writer on another node. Needs root, /dev/fuse and bindfs (CI has them); the
tests skip with a message otherwise.
"""

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

BINDFS = shutil.which("bindfs")
FUSE_MAGIC = 0x65735546


def require_bindfs():
    if os.geteuid() != 0 or not BINDFS or not os.path.exists("/dev/fuse"):
        pytest.skip("needs root, /dev/fuse and bindfs (apt-get install bindfs)")


@contextlib.contextmanager
def bindfs_mounts(backing: Path, mount_points, subtype="ckptdtest"):
    """Mounts `backing` at each of `mount_points` with fresh attributes; unmounts them all afterwards."""
    require_bindfs()
    backing.mkdir(parents=True, exist_ok=True)
    mounted = []
    try:
        for point in mount_points:
            point.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [BINDFS, "-o", f"attr_timeout=0,entry_timeout=0,negative_timeout=0,subtype={subtype}",
                 str(backing), str(point)],
                check=True,
            )
            mounted.append(point)
        yield mounted
    finally:
        for point in reversed(mounted):
            # A process still inside the mount (a killed test's child) makes umount fail: detach it lazily then.
            if subprocess.run(["umount", str(point)], check=False).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], check=False)


def fstype(path: Path) -> str:
    """The mountinfo fstype of the mount holding `path` (longest mount point)."""
    best, kind = "", ""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            dash = fields.index("-")
            if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, kind = point, fields[dash + 1]
    return kind
