"""Stand-ins for findmnt, lvs, lvcreate, lvremove, mount and umount, for kernels without device-mapper.

Each call is appended to ``$FAKE_LVM_LOG``. ``mount`` copies ``$FAKE_LVM_ORIGIN`` (the "volume")
into the mount point, which is what a snapshot shows; ``$FAKE_LVM_FAIL`` names a tool that fails;
``$FAKE_LVM_OVERFLOW=1`` reports the snapshot invalid (it ran out of room); ``lvs /dev/VG/LV`` answers
VG LV, any other device is vg0/data. The agent gives these tools only an allow-listed environment, so
the ``FAKE_LVM_*`` settings reach them through ``fakelvm.json`` beside the wrappers (``configure``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys

SETTINGS = "fakelvm.json"


def configure(bin_dir: str, env: dict) -> None:
    """Hand the ``FAKE_LVM_*`` variables of ``env`` to the wrappers in ``bin_dir``."""
    with open(os.path.join(bin_dir, SETTINGS), "w", encoding="utf-8") as out:
        json.dump({k: v for k, v in env.items() if k.startswith("FAKE_LVM_")}, out)


def _load_settings() -> None:
    path = os.environ.get("FAKE_LVM_SETTINGS")
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            os.environ.update(json.load(handle))


def main(tool: str, args: list[str]) -> int:
    _load_settings()
    with open(os.environ["FAKE_LVM_LOG"], "a", encoding="utf-8") as log:
        log.write(" ".join([tool, *args]) + "\n")
    if os.environ.get("FAKE_LVM_FAIL") == tool:
        print(f"  {tool}: simulated failure", file=sys.stderr)
        return 5
    origin = os.environ["FAKE_LVM_ORIGIN"]
    if tool == "findmnt":
        print(f"/dev/mapper/vg0-data {origin} ext4")
    elif tool == "lvs" and "lv_attr" in args:
        print("  swi-a-s---" if os.environ.get("FAKE_LVM_OVERFLOW") != "1" else "  swi-I-s---")
    elif tool == "lvs" and args[-1].startswith("/dev/") and not args[-1].startswith("/dev/mapper/"):
        print("  " + " ".join(args[-1].split("/")[2:4]))  # /dev/VG/LV, as --lvm-srcvol names it
    elif tool == "lvs":
        print("  vg0 data")
    elif tool == "mount":
        shutil.copytree(origin, args[-1], symlinks=True, dirs_exist_ok=True)
    elif tool == "umount":
        for name in os.listdir(args[-1]):
            path = os.path.join(args[-1], name)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
    return 0


def install(bin_dir: str) -> None:
    """Write one wrapper per tool into ``bin_dir``."""
    os.makedirs(bin_dir, exist_ok=True)
    for tool in ("findmnt", "lvs", "lvcreate", "lvremove", "mount", "umount"):
        path = os.path.join(bin_dir, tool)
        with open(path, "w", encoding="utf-8") as script:
            settings = os.path.join(os.path.abspath(bin_dir), SETTINGS)
            script.write(f'#!/bin/sh\nFAKE_LVM_SETTINGS="{settings}" exec "{sys.executable}" '
                         f'"{os.path.abspath(__file__)}" {tool} "$@"\n')
        os.chmod(path, 0o755)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
