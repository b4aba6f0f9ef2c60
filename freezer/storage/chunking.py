"""Regroup a stream of chunks into parts of at least a given size, for multipart uploads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def parts(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Join chunks into parts of ``size`` bytes or a little more; only the last may be smaller.

    An empty stream gives one empty part, so an empty file is still stored."""
    pending: list[bytes] = []
    held, produced = 0, False
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held >= size:
            yield b"".join(pending)
            pending, held, produced = [], 0, True
    if held or not produced:
        yield b"".join(pending)
