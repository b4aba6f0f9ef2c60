"""The raw transports and codecs, moving the same bytes the agent moves, for the ratios."""

from __future__ import annotations

import ftplib
import os
import shlex
import ssl
import subprocess
from typing import NamedTuple

import paramiko

from freezer.engine.tar import READ_RECORD

MIB = 1 << 20
THREADS = str(os.cpu_count() or 1)


def cp_fsync(src: str, dst: str) -> None:
    subprocess.run(["dd", f"if={src}", f"of={dst}", "bs=1M", "conv=fsync", "status=none"], check=True)


def tar_extract(tar_path: str, target: str) -> None:
    """GNU tar extracting the uncompressed stream: what a local restore cannot beat."""
    os.makedirs(target, exist_ok=True)
    subprocess.run(["tar", "--extract", f"--file={tar_path}", f"--directory={target}"], check=True)


class Usage(NamedTuple):
    """CPU seconds (user+sys) of the one process that matters in a run, from wait4."""

    cpu_s: float


def _reaped(proc: subprocess.Popen) -> Usage:
    """Wait for ``proc`` with wait4; fail if it failed; its CPU seconds."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args)
    return Usage(usage.ru_utime + usage.ru_stime)


def tar_create_alone(source: str) -> Usage:
    """GNU tar writing the source into a pipe this process drains: the backup's producer alone.

    The pipe matters: tar skips reading file contents when its output is /dev/null itself. The
    CPU returned is tar's own, not the reader's; tar writes records as big as the agent's.
    """
    proc = subprocess.Popen(["tar", "--create", "--format=posix", "--file=-", f"--directory={source}",
                             "."],
                            stdout=subprocess.PIPE)
    buffer = bytearray(MIB)
    with proc.stdout:
        while proc.stdout.readinto(buffer):
            pass
    return _reaped(proc)


def tar_extract_piped(tar_path: str, target: str) -> Usage:
    """GNU tar extracting the stream from a pipe this process fills, as a streamed restore must.

    The CPU returned is tar's own, not the writer's.
    """
    os.makedirs(target, exist_ok=True)
    proc = subprocess.Popen(["tar", "--extract", READ_RECORD, "--file=-", f"--directory={target}"],
                            stdin=subprocess.PIPE)
    with open(tar_path, "rb") as source, proc.stdin:
        size, sent = os.fstat(source.fileno()).st_size, 0
        while sent < size:
            sent += os.sendfile(proc.stdin.fileno(), source.fileno(), sent, size - sent)
    return _reaped(proc)


def codec_alone(tar_path: str, compression: str, pass_file: str | None, out: str = "/dev/null") -> None:
    """The compressor and/or openssl on the same stream, output to ``out`` (discarded by default)."""
    stages = []
    if compression == "zstd":
        stages.append(f"zstd -c -q -3 -T{THREADS}")
    elif compression == "gzip":
        stages.append(f"pigz -c -6 -p {THREADS}")
    if pass_file:
        stages.append(f"openssl enc -e -aes-256-cfb -md sha256 -salt -pass file:{shlex.quote(pass_file)}")
    # The input redirection goes first: after the last stage it would feed that stage, not the first.
    subprocess.run(f"< {shlex.quote(tar_path)} " + " | ".join(stages) + f" > {shlex.quote(out)}", shell=True,
                   check=True, stderr=subprocess.DEVNULL)


def codec_decode_alone(encoded: str, compression: str, pass_file: str | None) -> None:
    """openssl and/or the decompressor on what ``codec_alone`` wrote, output discarded: a restore's codecs."""
    stages = []
    if pass_file:
        stages.append(f"openssl enc -d -aes-256-cfb -md sha256 -pass file:{shlex.quote(pass_file)}")
    if compression == "zstd":
        stages.append("zstd -d -c -q")
    elif compression == "gzip":
        stages.append("pigz -d -c")
    subprocess.run(f"< {shlex.quote(encoded)} " + " | ".join(stages) + " > /dev/null", shell=True, check=True,
                   stderr=subprocess.DEVNULL)


def _ftp(server, tls: bool) -> ftplib.FTP:
    if tls:
        context = ssl.create_default_context(cafile=server.ca.ca_file)
        ftp = ftplib.FTP_TLS(context=context)
    else:
        ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", server.port)
    if tls:
        ftp.auth()
    ftp.login(server.username, server.password)
    if tls:
        ftp.prot_p()
    return ftp


def ftp_put(server, tar_path: str, tls: bool = False) -> None:
    with _ftp(server, tls) as ftp, open(tar_path, "rb") as handle:
        ftp.storbinary("STOR raw.tar", handle, blocksize=MIB)


def ftp_get(server, target: str, tls: bool = False) -> None:
    with _ftp(server, tls) as ftp, open(target, "wb") as out:
        ftp.retrbinary("RETR raw.tar", out.write, blocksize=MIB)


def openssh_sftp(server, workdir: str, command: str) -> None:
    """OpenSSH's sftp client running one batch command (put or get)."""
    batch = os.path.join(workdir, "batch")
    with open(batch, "w") as out:
        out.write(command + "\n")
    subprocess.run(["sftp", "-q", "-b", batch, "-i", server.client_key, "-P", str(server.port),
                    "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={workdir}/kh",
                    f"{server.username}@127.0.0.1"], check=True, capture_output=True)


def _paramiko(server) -> tuple[paramiko.Transport, paramiko.SFTPClient]:
    transport = paramiko.Transport(("127.0.0.1", server.port), default_window_size=64 * MIB,
                                   default_max_packet_size=256 << 10)
    transport.connect(username=server.username, password=server.password)
    return transport, paramiko.SFTPClient.from_transport(transport, window_size=64 * MIB,
                                                         max_packet_size=256 << 10)


def paramiko_put(server, tar_path: str) -> None:
    transport, sftp = _paramiko(server)
    with open(tar_path, "rb") as handle:
        sftp.putfo(handle, f"{server.root}/raw-paramiko.tar")
    transport.close()


def paramiko_get(server, target: str) -> None:
    transport, sftp = _paramiko(server)
    with open(target, "wb") as out:
        sftp.getfo(f"{server.root}/raw-paramiko.tar", out, max_concurrent_prefetch_requests=64)
    transport.close()
