"""``openssl enc -aes-256-cfb -md sha256 -salt -pass file:F``, done in this process.

The bytes are the ones that command writes (``Salted__``, 8 bytes of salt, then AES-256-CFB128
with key and IV from EVP_BytesToKey over SHA-256, one round), so upstream freezer and a user
with openssl read them as before. In process, no child re-reads the stream from a pipe and
writes it back 4 KiB at a time, which cost about half the speed of an encrypted backup.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator

from freezer.errors import FreezerError

MAGIC = b"Salted__"
SALT_SIZE = 8
HEADER_SIZE = len(MAGIC) + SALT_SIZE
PASS_MAX = 1023  # openssl reads at most this much of the pass file's first line
KEY_SIZE, IV_SIZE = 32, 16


class NotEncrypted(FreezerError):
    """The stream does not start the way ``openssl enc -salt`` output does."""


def read_passphrase(path: str) -> bytes:
    """The passphrase as ``-pass file:PATH`` takes it: the first line, without its newline.

    At most PASS_MAX bytes are read (a device such as /dev/zero never ends); a NUL byte is refused,
    since openssl would cut the passphrase there and derive another key.
    """
    try:
        with open(path, "rb") as handle:
            line = handle.read(PASS_MAX)
    except OSError as exc:
        raise FreezerError(f"cannot read --encrypt-pass-file {path}: {exc.strerror}") from exc
    line = line.split(b"\n", 1)[0]
    if b"\0" in line:
        raise FreezerError(f"--encrypt-pass-file {path} holds NUL bytes: give a text file whose first line "
                           "is the passphrase")
    return line


def derive_key(passphrase: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """Key and IV as OpenSSL's EVP_BytesToKey makes them with SHA-256 and one round."""
    material, block = b"", b""
    while len(material) < KEY_SIZE + IV_SIZE:
        block = hashlib.sha256(block + passphrase + salt).digest()
        material += block
    return material[:KEY_SIZE], material[KEY_SIZE:KEY_SIZE + IV_SIZE]


def encrypt(chunks: Iterable[bytes], pass_file: str) -> Iterator[bytes]:
    """Yield the salted header, then each chunk encrypted."""
    salt = os.urandom(SALT_SIZE)
    key, iv = derive_key(read_passphrase(pass_file), salt)
    encryptor = _aes_cfb(key, iv).encryptor()
    yield MAGIC + salt
    for chunk in chunks:
        yield encryptor.update(chunk)
    tail = encryptor.finalize()
    if tail:
        yield tail


def decrypt(chunks: Iterable[bytes], pass_file: str) -> Iterator[bytes]:
    """Yield the plain bytes of a stream ``encrypt`` (or openssl) wrote."""
    passphrase = read_passphrase(pass_file)
    stream = iter(chunks)
    header, rest = _header(stream)
    key, iv = derive_key(passphrase, header[len(MAGIC):])
    decryptor = _aes_cfb(key, iv).decryptor()
    if rest:
        yield decryptor.update(rest)
    for chunk in stream:
        yield decryptor.update(chunk)
    tail = decryptor.finalize()
    if tail:
        yield tail


def _aes_cfb(key: bytes, iv: bytes):
    """AES-256-CFB128; cryptography is imported here, so runs without encryption never load it."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    try:  # AES-CFB lives among the "decrepit" ciphers from cryptography 43 on
        from cryptography.hazmat.decrepit.ciphers.modes import CFB
    except ImportError:  # pragma: no cover - older cryptography
        from cryptography.hazmat.primitives.ciphers.modes import CFB
    return Cipher(algorithms.AES(key), CFB(iv))


def _header(stream: Iterator[bytes]) -> tuple[bytes, bytes]:
    """The 16-byte header (which may span chunks) and whatever followed it in the last chunk read."""
    head = b""
    for chunk in stream:
        head += chunk
        if len(head) >= HEADER_SIZE:
            break
    if len(head) < HEADER_SIZE or not head.startswith(MAGIC):
        raise NotEncrypted("the backup data is not openssl-encrypted (no Salted__ header): "
                           "was it made without --encrypt-pass-file?")
    return head[:HEADER_SIZE], head[HEADER_SIZE:]
