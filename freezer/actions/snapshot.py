"""``--snapshot``: back up from a read-only LVM snapshot of the volume holding the source."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from freezer.common.config import child_environment
from freezer.errors import FreezerError

LOG = logging.getLogger(__name__)
TOOLS = ("findmnt", "lvs", "lvcreate", "lvremove", "mount", "umount")


@dataclass(frozen=True)
class Volume:
    """Where a path lives: its mounted device, mount point, file system and logical volume."""

    device: str
    mount_point: str
    fstype: str
    vg: str
    lv: str


def run_tool(*argv: str) -> str:
    """Run one LVM or mount tool; its stderr becomes a one-line FreezerError."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=child_environment())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FreezerError(f"--snapshot: {argv[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.split()) or f"exit {proc.returncode}"
        raise FreezerError(f"--snapshot: {' '.join(argv[:2])} failed: {detail}")
    return proc.stdout


def check_tools() -> None:
    """Fail before anything changes when an LVM or mount tool is missing."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise FreezerError(f"--snapshot needs the LVM tools ({', '.join(missing)} not found): "
                           "install lvm2, or run without --snapshot")


def volume_of(path: str) -> Volume:
    """The logical volume mounted under ``path``, or a clear error if it is not on LVM."""
    found = run_tool("findmnt", "--noheadings", "--first-only", "--output", "SOURCE,TARGET,FSTYPE",
                     "--target", path).split()
    if len(found) != 3:
        raise FreezerError(f"--snapshot: cannot tell which volume holds {path}")
    device, mount_point, fstype = found
    try:
        names = run_tool("lvs", "--noheadings", "--options", "vg_name,lv_name", device).split()
    except FreezerError as exc:
        raise FreezerError(f"--snapshot: {path} is on {device}, which is not an LVM logical volume: "
                           "run without --snapshot") from exc
    if len(names) != 2:
        raise FreezerError(f"--snapshot: {path} is on {device}, which is not an LVM logical volume")
    return Volume(device, mount_point, fstype, names[0], names[1])


def mount_options(fstype: str, permission: str = "ro") -> str:
    """``ro`` (or ``rw`` with ``--lvm-snap-perm rw``), and for XFS ``nouuid`` (a snapshot shares its
    origin's UUID)."""
    return f"{permission},nouuid" if fstype == "xfs" else permission


def lv_names(device: str, option: str) -> tuple[str, str]:
    """(volume group, logical volume) of ``device`` as LVM names them."""
    try:
        names = run_tool("lvs", "--noheadings", "--options", "vg_name,lv_name", device).split()
    except FreezerError as exc:
        raise FreezerError(f"{option} {device} is not an LVM logical volume") from exc
    if len(names) != 2:
        raise FreezerError(f"{option} {device} is not an LVM logical volume")
    return names[0], names[1]


def origin_of(conf, volume: Volume, source: str) -> tuple[str, str]:
    """What lvcreate snapshots and its volume group: ``--lvm-srcvol`` / ``--lvm-volgroup`` when
    given (checked against the volume that holds the source), else the volume found."""
    origin, vg = f"{volume.vg}/{volume.lv}", volume.vg
    if conf.lvm_srcvol:
        named = lv_names(conf.lvm_srcvol, "--lvm-srcvol")
        if named != (volume.vg, volume.lv):
            raise FreezerError(f"--lvm-srcvol {conf.lvm_srcvol} is {named[0]}/{named[1]}, but {source} is on "
                               f"{volume.vg}/{volume.lv}: give the volume that holds --path-to-backup")
        origin = conf.lvm_srcvol
    if conf.lvm_volgroup and conf.lvm_volgroup != vg:
        raise FreezerError(f"--lvm-volgroup {conf.lvm_volgroup}: {source} is on a volume of group {vg}")
    return origin, vg


def size_arguments(size: str) -> list[str]:
    """``--size 1G``, or ``--extents 80%FREE`` for a percentage (as lvcreate -l takes it)."""
    return ["--extents" if "%" in size else "--size", size]


@dataclass(frozen=True)
class Mounted:
    """A mounted snapshot: the backup path inside it, and the logical volume to check."""

    path: str
    lv_path: str

    def check_intact(self) -> None:
        """Fail if the snapshot overflowed (LVM marks it invalid and reads become errors)."""
        attributes = run_tool("lvs", "--noheadings", "--options", "lv_attr", self.lv_path).strip()
        if len(attributes) > 4 and attributes[4] == "I":
            raise FreezerError(f"--snapshot: {self.lv_path} ran out of room during the backup: "
                               "raise --lvm-snapsize")


@contextlib.contextmanager
def of_path(conf) -> Iterator[Mounted]:
    """Snapshot the volume of ``--path-to-backup`` and mount it read-only until the block ends."""
    if not conf.path_to_backup:
        raise FreezerError("--path-to-backup is required for --action backup")
    source = os.path.realpath(os.path.expanduser(conf.path_to_backup))
    if not os.path.exists(source):
        raise FreezerError(f"--path-to-backup {source} does not exist")
    check_tools()
    volume = volume_of(source)
    origin, vg = origin_of(conf, volume, source)
    name = conf.lvm_snapname or f"{volume.lv}_freezer_{os.getpid()}"
    permission = conf.lvm_snapperm or "ro"
    if getattr(conf, "sync", False):
        os.sync()  # --sync: what is in the page cache goes into the snapshot
    run_tool("lvcreate", "--snapshot", *size_arguments(conf.lvm_snapsize), "--name", name,
             "--permission", "r" if permission == "ro" else "rw", origin)
    LOG.info("created LVM snapshot %s/%s of %s", vg, name, volume.device)
    with _removing(f"{vg}/{name}"), _mount_dir(conf.lvm_dirmount) as mount_dir:
        run_tool("mount", "-o", mount_options(volume.fstype, permission), f"/dev/{vg}/{name}", mount_dir)
        with _unmounting(mount_dir):
            yield Mounted(os.path.join(mount_dir, os.path.relpath(source, volume.mount_point)), f"{vg}/{name}")


@contextlib.contextmanager
def _removing(lv_path: str) -> Iterator[None]:
    try:
        yield
    finally:
        _cleanup("lvremove", "--force", lv_path)


@contextlib.contextmanager
def _mount_dir(parent: str | None) -> Iterator[str]:
    mount_dir = tempfile.mkdtemp(prefix="freezer-snapshot-", dir=parent or None)
    try:
        yield mount_dir
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(mount_dir)


@contextlib.contextmanager
def _unmounting(mount_dir: str) -> Iterator[None]:
    try:
        yield
    finally:
        _cleanup("umount", mount_dir)


def _cleanup(*argv: str) -> None:
    """Undo one step; a failure is logged, never hides the backup's own outcome."""
    try:
        run_tool(*argv)
    except FreezerError as exc:
        LOG.warning("%s (clean it up by hand)", exc)
