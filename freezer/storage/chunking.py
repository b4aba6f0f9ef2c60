"""Regroup a stream of chunks into parts of at least a given size, for multipart uploads."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def groups(chunks: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    """Chunks gathered, not joined (no copy), in lists of ``size`` bytes or a little more; only the last
    may be smaller, and an empty stream gives one empty list, so an empty file is still stored."""
    group: list[bytes] = []
    held, produced = 0, False
    for chunk in chunks:
        group.append(chunk)
        held += len(chunk)
        if held >= size:
            yield group
            group, held, produced = [], 0, True
    if held or not produced:
        yield group


def parts(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Chunks joined into parts of ``size`` bytes or a little more (see ``groups``)."""
    for group in groups(chunks, size):
        yield b"".join(group)


class Untouched:
    """Chunks that tell whether any was taken yet: a stream not yet read can still be sent again."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self.started = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._chunks)
        self.started = True
        return chunk
