"""The benchmark data set: half in a few large files, half in many small ones; half random, half text."""

from __future__ import annotations

import os

MIB = 1 << 20
SMALL = 32 << 10


def make_data(root: str, size_mib: int) -> None:
    """Write about ``size_mib`` MiB below ``root``."""
    os.makedirs(f"{root}/small", exist_ok=True)
    text = (b"freezer benchmark line of compressible text\n" * 24000)[:MIB]
    large = max(size_mib // 2, 4)
    for index in range(4):
        with open(f"{root}/large-{index}.bin", "wb") as out:
            for block in range(large // 4):
                out.write(os.urandom(MIB) if block % 2 else text)
    for index in range(size_mib // 2 * (MIB // SMALL)):
        with open(f"{root}/small/f{index:06d}", "wb") as out:
            out.write(os.urandom(SMALL) if index % 2 else text[:SMALL])


def size_mib(root: str) -> float:
    """The bytes of file content below ``root``, in MiB."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files) / MIB


def change_one_percent(root: str) -> int:
    """Rewrite 1% of the small files (at least one); return how many bytes changed."""
    names = sorted(os.listdir(f"{root}/small"))
    changed = names[:: 100] or names[:1]
    for name in changed:
        with open(f"{root}/small/{name}", "wb") as out:
            out.write(os.urandom(SMALL))
    return len(changed) * SMALL
