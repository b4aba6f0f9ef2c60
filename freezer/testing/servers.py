"""Real servers on 127.0.0.1 for tests and the demo: pyftpdlib, vsftpd, OpenSSH sshd.

Each server is a fixture: it starts in ``setUp``, serves a local directory
(``root``), and stops in ``cleanUp``. ``agent_options()`` gives the
freezer-agent options that reach it.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import fixtures

TEST_USER = "freezer-test"
TEST_PASSWORD = "pw-freezer-Test-1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 15, host: str = "127.0.0.1") -> None:
    """Wait until ``port`` accepts connections; fail if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {_output(proc)}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on port {port} within {timeout}s")


def process_tree(root: int) -> dict[int, list[str]]:
    """``root`` and every process below it, by pid: the fields of each one's /proc/<pid>/stat after its name
    (field 1 is the parent, 11 and 12 the user and system ticks)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                stats[int(entry)] = stat.read().rsplit(")", 1)[1].split()
    parents = {pid: int(fields[1]) for pid, fields in stats.items()}
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - tree
        tree |= frontier
    return {pid: stats[pid] for pid in tree if pid in stats}


def drop_sessions(master_pid: int) -> int:
    """Kill every process a forking server (sshd, vsftpd) started per connection: the link drops."""
    doomed = set(process_tree(master_pid)) - {master_pid}
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    return len(doomed)


def wait_until(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Poll ``condition`` until true; fail if ``proc`` ends first (the moment to act on it has passed)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{proc.args[0]} ended or stalled before the test could act: {proc.returncode}")
        time.sleep(0.01)


def kill_server(master_pid: int) -> int:
    """Kill a forking server and every session it started, so nothing answers any more: the link drops
    and reconnecting is refused. Returns how many processes died."""
    os.kill(master_pid, signal.SIGSTOP)  # no new session while the running ones are found and killed
    killed = drop_sessions(master_pid)
    os.kill(master_pid, signal.SIGKILL)
    return killed + 1


class Blackhole(fixtures.Fixture):
    """A port on 127.0.0.1 that takes connections (the kernel completes them) and never says a word."""

    host = "127.0.0.1"

    def _setUp(self):
        self.sock = socket.socket()
        self.sock.bind((self.host, 0))
        self.sock.listen(16)
        self.addCleanup(self.sock.close)
        self.port = self.sock.getsockname()[1]


def _output(proc: subprocess.Popen) -> str:
    with contextlib.suppress(Exception):
        return (proc.stderr.read() or b"").decode(errors="replace")[-2000:] if proc.stderr else ""
    return ""


def ensure_test_user() -> pwd.struct_passwd:
    """The system user vsftpd and sshd log in as (created once, needs root)."""
    try:
        user = pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", TEST_USER], check=True)
        user = pwd.getpwnam(TEST_USER)
    subprocess.run(["chpasswd"], input=f"{TEST_USER}:{TEST_PASSWORD}", text=True, check=True)
    return user


def served_dir(parent: str, name: str, owner: pwd.struct_passwd | None = None) -> str:
    """A directory a server can use as its root (path traversable, owned by ``owner``)."""
    path = os.path.join(parent, name)
    os.makedirs(path, exist_ok=True)
    scratch = ("/tmp/", "/dev/shm/", os.path.join(tempfile.gettempdir(), ""))
    walk = parent
    while walk not in ("/", ""):
        os.chmod(walk, os.stat(walk).st_mode | 0o755) if walk.startswith(scratch) else None
        walk = os.path.dirname(walk)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


class TestCA(fixtures.Fixture):
    """A throw-away CA, a server certificate for 127.0.0.1, ::1 and localhost, and client certificates."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def _setUp(self):
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        os.makedirs(self.directory, exist_ok=True)
        self._ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "freezer test CA")])
        ca_cert = (self._builder(self._ca_name, self._ca_key)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                  critical=True)
                   .sign(self._ca_key, _sha256()))
        self.ca_file = os.path.join(self.directory, "ca.pem")
        _write_pem(self.ca_file, ca_cert)
        san = x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                           x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                           x509.IPAddress(ipaddress.ip_address("::1"))])
        self.cert_file, self.key_file = self._issue("server", "localhost", san)

    def client_cert(self, name: str = "freezer-agent") -> tuple[str, str]:
        """A client certificate and its key, signed by this CA: (cert file, key file)."""
        from cryptography import x509
        from cryptography.x509.oid import ExtendedKeyUsageOID

        return self._issue(f"client-{name}", name, x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]))

    def _builder(self, subject, key):
        from cryptography import x509

        now = datetime.datetime.now(datetime.UTC)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(self._ca_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30)))

    def _issue(self, stem: str, common_name: str, extension) -> tuple[str, str]:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = self._builder(subject, key).add_extension(extension, critical=False).sign(self._ca_key, _sha256())
        cert_file = os.path.join(self.directory, f"{stem}.pem")
        key_file = os.path.join(self.directory, f"{stem}.key")
        _write_pem(cert_file, cert)
        with open(key_file, "wb") as out:
            out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption()))
        os.chmod(key_file, 0o600)
        return cert_file, key_file


def _sha256():
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _write_pem(path: str, cert) -> None:
    from cryptography.hazmat.primitives import serialization

    with open(path, "wb") as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))


class _Server(fixtures.Fixture):
    """A server process serving ``root``; subclasses start it."""

    storage = "ftp"
    host = "127.0.0.1"
    port = 0
    username = TEST_USER
    password = TEST_PASSWORD
    proc: subprocess.Popen | None = None

    def __init__(self, workdir: str):
        super().__init__()
        self.workdir = workdir

    def stop(self) -> None:
        """Stop the server process now (the port is free again); cleanUp does the rest."""
        self._stop()

    def _stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def agent_options(self, container: str = "backups") -> list[str]:
        return ["--storage", self.storage, "--container", container, "--ftp-host", self.host,
                "--ftp-port", str(self.port), "--ftp-username", self.username,
                "--ftp-password", self.password]


class PyFtpd(_Server):
    """pyftpdlib: FTP, or explicit FTPS with a throw-away CA (``tls=True``)."""

    def __init__(self, workdir: str, tls: bool = False, *flags: str, host: str = "127.0.0.1",
                 client_certs: bool = False):
        super().__init__(workdir)
        self.tls = tls
        self.flags = flags
        self.host = host
        self.client_certs = client_certs  # TLS refused without a client certificate from the test CA
        self.storage = "ftps" if tls else "ftp"
        self.username = "freezer"

    def _setUp(self):
        self.root = served_dir(self.workdir, "ftp-root")
        argv = [sys.executable, "-m", "freezer.testing.pyftpd", "--root", self.root,
                "--user", self.username, "--password", self.password, "--host", self.host, *self.flags]
        if self.tls:
            self.ca = self.useFixture(TestCA(os.path.join(self.workdir, "ca")))
            argv += ["--cert", self.ca.cert_file, "--key", self.ca.key_file]
            argv += ["--client-ca", self.ca.ca_file] if self.client_certs else []
        # Its log goes to a file: a pipe nobody reads fills after some 25 sessions and the server hangs.
        log = open(os.path.join(self.workdir, "pyftpd.log"), "w+b")  # noqa: SIM115 - closed in cleanup
        self.addCleanup(log.close)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log)
        self.addCleanup(self._stop)
        line = self.proc.stdout.readline()
        if not line.strip():
            log.seek(0)
            raise RuntimeError(f"pyftpdlib did not start: {log.read().decode(errors='replace')[-2000:]}")
        self.port = int(line)

    def agent_options(self, container: str = "backups") -> list[str]:
        options = super().agent_options(container)
        return options + (["--ftp-cacert", self.ca.ca_file] if self.tls else [])


class Vsftpd(_Server):
    """vsftpd with a local user; with ``tls=True`` its strict defaults (session reuse, forced TLS)."""

    def __init__(self, workdir: str, tls: bool = False, implicit: bool = False, lock_uploads: bool = True):
        super().__init__(workdir)
        self.tls = tls or implicit
        self.implicit = implicit
        self.lock_uploads = lock_uploads  # vsftpd's default: one writer of a file at a time
        self.storage = "ftps" if self.tls else "ftp"

    def _setUp(self):
        binary = shutil.which("vsftpd") or "/usr/sbin/vsftpd"
        user = ensure_test_user()
        self.root = served_dir(self.workdir, "vsftpd-root", owner=user)
        self.port = free_port()
        pasv = free_port()
        lines = {
            "listen": "YES", "listen_address": "127.0.0.1", "listen_port": self.port, "background": "NO",
            "anonymous_enable": "NO", "local_enable": "YES", "write_enable": "YES", "local_umask": "022",
            "local_root": self.root, "pam_service_name": "vsftpd", "seccomp_sandbox": "NO",
            "pasv_enable": "YES", "pasv_min_port": pasv, "pasv_max_port": pasv + 20,
            "xferlog_enable": "NO", "userlist_enable": "NO", "utf8_filesystem": "YES",
            "secure_chroot_dir": self._empty_dir(), "ssl_enable": "YES" if self.tls else "NO",
            "lock_upload_files": "YES" if self.lock_uploads else "NO",
        }
        if self.tls:
            self.ca = self.useFixture(TestCA(os.path.join(self.workdir, "ca")))
            lines.update({"rsa_cert_file": self.ca.cert_file, "rsa_private_key_file": self.ca.key_file,
                          "require_ssl_reuse": "YES", "force_local_data_ssl": "YES",
                          "force_local_logins_ssl": "YES", "ssl_ciphers": "HIGH",
                          "implicit_ssl": "YES" if self.implicit else "NO"})
        config = os.path.join(self.workdir, "vsftpd.conf")
        with open(config, "w") as out:
            out.writelines(f"{key}={value}\n" for key, value in lines.items())
        self.proc = subprocess.Popen([binary, config], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(self._stop)
        wait_for_port(self.port, self.proc)

    def _empty_dir(self) -> str:
        path = os.path.join(self.workdir, "vsftpd-empty")
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o755)
        return path

    def agent_options(self, container: str = "backups") -> list[str]:
        options = super().agent_options(container)
        options += ["--ftp-cacert", self.ca.ca_file] if self.tls else []
        return options + (["--ftp-implicit-tls"] if self.implicit else [])
