"""Object stores on 127.0.0.1 for tests: SeaweedFS (S3) and a one-replica Swift all-in-one.

Both take seconds to start, so each test process starts one of each on first use and stops it
at exit; tests keep apart by using their own bucket or container.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

from freezer.testing.servers import free_port, wait_for_port

S3_ACCESS_KEY = "freezer-test-access"
S3_SECRET_KEY = "freezer-test-Secret-1"
SWIFT_USER = "test:tester"
SWIFT_KEY = "freezer-test-Key-1"
_RUNNING: dict[str, object] = {}


def _binary(name: str) -> str:
    beside = os.path.join(os.path.dirname(sys.executable), name)
    found = beside if os.path.exists(beside) else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed: run tools/setup-env.sh")
    return found


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a server and its children (SeaweedFS takes ~30 s to honour SIGTERM)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _start(argv: list[str], log_path: str, env: dict | None = None) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 - the server owns it until it exits
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, **(env or {})))
    atexit.register(_kill_group, proc)
    return proc


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until ``url`` answers any HTTP status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


class Seaweed:
    """``weed server`` with its S3 gateway; one identity with full rights."""

    def __init__(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="freezer-seaweed-")
        atexit.register(shutil.rmtree, self.workdir, True)
        config = os.path.join(self.workdir, "s3.json")
        with open(config, "w") as out:
            json.dump({"identities": [{"name": "freezer", "credentials": [
                {"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, out)
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        argv = [_binary("weed"), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.workdir}",
                "-volume.max=600", "-master.volumeSizeLimitMB=64", "-metricsPort=0",
                "-s3", f"-s3.config={config}", "-s3.allowEmptyFolder=false", "-s3.port.iceberg=0", "-s3.port.lance=0"]
        for name, port in ports.items():
            argv += [f"-{name}.port={port}", f"-{name}.port.grpc={free_port()}"]
        self.proc = _start(argv, os.path.join(self.workdir, "weed.log"))
        self.endpoint = f"http://127.0.0.1:{ports['s3']}"
        _wait_http(self.endpoint + "/", self.proc)
        self._wait_writable()

    def _wait_writable(self, timeout: float = 60) -> None:
        """The S3 gateway answers before volumes are ready; wait until a put works."""
        client = self.client()
        deadline = time.monotonic() + timeout
        bucket = self.new_bucket()
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                client.put_object(Bucket=bucket, Key="probe", Body=b"ok")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=S3_ACCESS_KEY,
                            aws_secret_access_key=S3_SECRET_KEY, region_name="us-east-1")

    @staticmethod
    def new_bucket() -> str:
        return f"freezer-{uuid.uuid4().hex[:12]}"

    def agent_options(self, container: str) -> list[str]:
        return ["--storage", "s3", "--container", container, "--endpoint", self.endpoint,
                "--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY]


class SwiftAio:
    """Swift proxy (tempauth, memcache, SLO), account, container and object servers, one replica."""

    def __init__(self) -> None:
        self.workdir = tempfile.mkdtemp(prefix="freezer-swift-")
        atexit.register(shutil.rmtree, self.workdir, True)
        self.etc = os.path.join(self.workdir, "etc")
        os.makedirs(os.path.join(self.workdir, "srv", "d1"))
        os.makedirs(self.etc)
        memcached_port = free_port()
        memcached = _start([_memcached(), "-l", "127.0.0.1", "-p", str(memcached_port), "-U", "0", "-u", "root"],
                           os.path.join(self.workdir, "memcached.log"))
        wait_for_port(memcached_port, memcached)
        self._write(os.path.join(self.etc, "swift.conf"), {
            "swift-hash": {"swift_hash_path_suffix": uuid.uuid4().hex},
            "storage-policy:0": {"name": "gold", "default": "yes"}})
        for kind in ("account", "container", "object"):
            port = free_port()
            self._ring(kind, port)
            self._server(kind, port, {})
        self.port = free_port()
        self._server("proxy", self.port, {
            "pipeline:main": {"pipeline": "catch_errors cache slo tempauth proxy-server"},
            "app:proxy-server": {"use": "egg:swift#proxy", "allow_account_management": "true",
                                 "account_autocreate": "true"},
            "filter:catch_errors": {"use": "egg:swift#catch_errors"},
            "filter:slo": {"use": "egg:swift#slo"},
            "filter:cache": {"use": "egg:swift#memcache", "memcache_servers": f"127.0.0.1:{memcached_port}"},
            "filter:tempauth": {"use": "egg:swift#tempauth", "user_test_tester": f"{SWIFT_KEY} .admin"}})
        self.auth_url = f"http://127.0.0.1:{self.port}/auth/v1.0"
        _wait_http(f"http://127.0.0.1:{self.port}/info", self.procs[-1])

    procs: list[subprocess.Popen]

    def _ring(self, kind: str, port: int) -> None:
        builder = os.path.join(self.etc, f"{kind}.builder")
        tool = _binary("swift-ring-builder")
        for args in (["create", "4", "1", "1"], ["add", f"r1z1-127.0.0.1:{port}/d1", "1"], ["rebalance"]):
            subprocess.run([tool, builder, *args], check=True, capture_output=True)

    def _server(self, kind: str, port: int, sections: dict) -> None:
        base = {"DEFAULT": {"bind_ip": "127.0.0.1", "bind_port": str(port), "swift_dir": self.etc,
                            "devices": os.path.join(self.workdir, "srv"), "mount_check": "false",
                            "workers": "0", "log_level": "WARNING", "log_address": "/nonexistent"}}
        if not sections:
            sections = {"pipeline:main": {"pipeline": f"{kind}-server"},
                        f"app:{kind}-server": {"use": f"egg:swift#{kind}"}}
        conf = os.path.join(self.etc, f"{kind}-server.conf")
        self._write(conf, {**base, **sections})
        proc = _start([_binary(f"swift-{kind}-server"), conf], os.path.join(self.workdir, f"{kind}.log"))
        self.procs = [*getattr(self, "procs", []), proc]
        wait_for_port(port, proc, timeout=60)

    @staticmethod
    def _write(path: str, sections: dict) -> None:
        with open(path, "w") as out:
            for name, values in sections.items():
                out.write(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n")

    @staticmethod
    def new_container() -> str:
        return f"freezer-{uuid.uuid4().hex[:12]}"

    def agent_options(self, container: str) -> list[str]:
        return ["--storage", "swift", "--container", container, "--os-auth-url", self.auth_url,
                "--os-username", SWIFT_USER, "--os-password", SWIFT_KEY]


def _memcached() -> str:
    return shutil.which("memcached") or "/usr/bin/memcached"


def seaweed() -> Seaweed:
    """This process's SeaweedFS, started on first use."""
    if "s3" not in _RUNNING:
        _RUNNING["s3"] = Seaweed()
    return _RUNNING["s3"]  # type: ignore[return-value]


def swift() -> SwiftAio:
    """This process's Swift all-in-one, started on first use."""
    if "swift" not in _RUNNING:
        _RUNNING["swift"] = SwiftAio()
    return _RUNNING["swift"]  # type: ignore[return-value]
