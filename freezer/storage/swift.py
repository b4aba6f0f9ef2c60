"""Swift storage on python-swiftclient: ``--container name[/prefix]``, large objects as segments."""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Iterator

from freezer.common.settings import SwiftSettings
from freezer.errors import (
    AuthError,
    ConnectError,
    FreezerError,
    NoSpace,
    NotFound,
    PermissionDenied,
    ServerBusy,
    StorageError,
    TLSError,
    Unreachable,
    never_connected,
    reason,
)
from freezer.storage.base import Storage
from freezer.storage.object_store import ObjectStore, directory_prefix

LOG = logging.getLogger(__name__)
READ_CHUNK = 1024 * 1024


class SwiftStorage(ObjectStore):
    """Objects under ``prefix`` in one container; objects over ``segment_size`` become segments + manifest."""

    kind = "swift"

    def __init__(self, settings: SwiftSettings):
        super().__init__(settings)
        self._slo: bool | None = None

    @property
    def conn(self):
        return self.session

    @property
    def part_size(self) -> int:
        return self.settings.segment_size

    def _connect(self):
        from swiftclient import client

        s = self.settings
        options = {key: value for key, value in {
            "project_name": s.project_name, "project_domain_name": s.project_domain_name,
            "user_domain_name": s.user_domain_name, "region_name": s.region_name}.items() if value}
        # retries=0: one attempt per request (and no resuming of bodies), the Retrying wrapper is the only
        # retry layer; swiftclient still logs in again once when a token expires (HTTP 401).
        return client.Connection(authurl=s.auth_url, user=s.username, key=s.password, auth_version=s.auth_version,
                                 os_options=options, cacert=s.cacert, insecure=s.insecure, retries=0,
                                 timeout=s.timeout)

    def _put_object(self, path: str, key: str, body: bytes) -> None:
        self.conn.put_object(self.settings.container, key, contents=body)

    def _put_parts(self, path: str, key: str, parts: Iterator[bytes]) -> int:
        """Upload segments, then the manifest that joins them; remove the segments on failure."""
        stem = f"{key}/{uuid.uuid4().hex}"
        uploaded: list[dict] = []
        try:
            for number, body in enumerate(parts):
                name = f"{stem}/{number:08d}"
                etag = self.upload_request("upload", path, functools.partial(self._put_segment, name, body))
                uploaded.append({"path": f"/{self.settings.segments}/{name}", "etag": etag, "size_bytes": len(body)})
            self.upload_request("upload", path, lambda: self._put_manifest(key, stem, uploaded))
        except BaseException:
            self._remove_segments(stem + "/")
            raise
        return sum(segment["size_bytes"] for segment in uploaded)

    def _put_segment(self, name: str, body: bytes) -> str:
        return self.conn.put_object(self.settings.segments, name, contents=body)

    def _put_manifest(self, key: str, stem: str, segments: list[dict]) -> None:
        if self._has_slo():
            self.conn.put_object(self.settings.container, key, contents=json.dumps(segments),
                                 query_string="multipart-manifest=put")
        else:
            self.conn.put_object(self.settings.container, key, contents=b"",
                                 headers={"X-Object-Manifest": f"{self.settings.segments}/{stem}/"})

    def _has_slo(self) -> bool:
        """Static large objects when the cluster offers them; dynamic ones otherwise."""
        if self._slo is None:
            try:
                self._slo = "slo" in self.conn.get_capabilities()
            except Exception as exc:  # noqa: BLE001 - /info may be disabled
                LOG.info("no /info from Swift (%s): using dynamic large objects", exc)
                self._slo = False
        return self._slo

    def _download(self, path: str, key: str, offset: int) -> Iterator[bytes]:
        ranged = {"headers": {"Range": f"bytes={offset}-"}} if offset else {}
        _, body = self.conn.get_object(self.settings.container, key, resp_chunk_size=READ_CHUNK, **ranged)
        yield from body

    def _list(self, path: str, prefix: str, delimiter: str | None) -> Iterator[str]:
        for entry in self._listing(path, self.settings.container, prefix, delimiter):
            yield entry.get("subdir") or entry["name"]

    def _remove(self, path: str, key: str, keys: list[str]) -> None:
        for name in [*keys, key]:
            self._delete(self.settings.container, name)
        self._remove_segments(directory_prefix(key) or "/")

    def _object_size(self, path: str, key: str) -> int:
        return int(self.conn.head_object(self.settings.container, key)["content-length"])

    def _put_claim(self, path: str) -> bool:
        """Put our own ``path/.claim-<token>``, then win only if no other claimant's marker is listed.

        Swift's ``If-None-Match: *`` is checked without a lock: of 8 simultaneous PUTs of one name, up
        to 7 succeeded against a Swift all-in-one. With unique markers two claimants cannot both win as
        long as a listing shows every marker whose PUT has returned (Swift updates listings during the
        PUT, unless a container server is failing). A path contested at once may be lost by all; losers
        delete their markers, so it is free again.
        """
        prefix = self.claim_key(path) + "-"
        mine = prefix + self._token
        self.request("claim", path, lambda: self.conn.put_object(self.settings.container, mine, contents=b""))
        markers = {entry["name"] for entry in self._listing(path, self.settings.container, prefix)}
        if markers != {mine}:
            self._delete(self.settings.container, mine)  # a loser's marker never decides
            return False
        return True

    def _listing(self, path: str, container: str, prefix: str, delimiter: str | None = None) -> list[dict]:
        try:
            _, entries = self.conn.get_container(container, prefix=prefix, delimiter=delimiter, full_listing=True)
        except Exception as exc:
            mapped = self._error(exc, "list", path)
            if isinstance(mapped, NotFound):
                return []
            raise mapped from exc
        return entries

    def _remove_segments(self, prefix: str) -> None:
        try:
            for entry in self._listing(prefix, self.settings.segments, prefix):
                self._delete(self.settings.segments, entry["name"])
        except FreezerError as exc:
            LOG.warning("could not remove segments %s: %s", prefix, exc)

    def _delete(self, container: str, name: str) -> None:
        try:
            self.conn.delete_object(container, name)
        except Exception as exc:
            mapped = self._error(exc, "remove", name)
            if not isinstance(mapped, NotFound):
                raise mapped from exc

    def _prepare(self) -> None:
        """Create the container and its segments container (idempotent in Swift)."""
        for container in (self.settings.container, self.settings.segments):
            self.request("create container", container, lambda container=container: self.conn.put_container(
                container))

    def _error(self, exc: Exception, action: str, path: str) -> Exception:
        return swift_error(exc, action, path, self.settings)


def swift_error(exc: Exception, action: str, path: str, s: SwiftSettings) -> Exception:
    """One line naming what went wrong and the option to change."""
    import requests
    import urllib3
    from swiftclient.exceptions import ClientException

    if isinstance(exc, FreezerError):
        return exc
    if isinstance(exc, requests.exceptions.SSLError):
        return TLSError(f"TLS with {s.auth_url} failed: add the CA with --os-cacert (or, unsafely, --insecure)")
    if isinstance(exc, requests.exceptions.ConnectionError) and never_connected(exc):
        return Unreachable(f"cannot reach Swift at {s.auth_url} during {action}: check --os-auth-url")
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                        requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError)):
        return ConnectError(f"connection to Swift at {s.auth_url} lost during {action} {path}: {reason(exc)}")
    if isinstance(exc, ClientException):
        return _client_error(exc, action, path, s)
    if isinstance(exc, OSError):
        return ConnectError(f"connection to Swift failed during {action} {path}: {reason(exc)}")
    return exc


def _client_error(exc, action: str, path: str, s: SwiftSettings) -> Exception:
    status = exc.http_status
    if status == 401 or (status is None and "auth" in str(exc).lower()):
        return AuthError(f"Swift at {s.auth_url} refused user {s.username!r}: check --os-username and --os-password")
    if status == 404:
        return NotFound(f"{path} not found in {s.where}")
    if status == 403:
        return PermissionDenied(f"Swift denied {action} {path} in {s.where}: check the user's roles")
    if status in (413, 507):
        return NoSpace(f"Swift at {s.where} is out of space or quota during {action} {path} (HTTP {status})")
    reason = exc.http_reason or str(exc).splitlines()[0]
    kind = ServerBusy if status in (429, 498) or (status or 0) >= 500 else StorageError
    return kind(f"Swift {action} {path} failed: HTTP {status} {reason}".rstrip())


def from_settings(settings: SwiftSettings) -> Storage:
    """``--storage swift``."""
    try:
        import swiftclient  # noqa: F401
    except ModuleNotFoundError as exc:
        raise FreezerError("--storage swift needs python-swiftclient: pip install python-swiftclient") from exc
    if settings.auth_version == "3":
        try:
            import keystoneclient  # noqa: F401
        except ModuleNotFoundError as exc:
            raise FreezerError("Keystone v3 login needs python-keystoneclient: pip install python-keystoneclient, "
                               "or use --os-identity-api-version 1") from exc
    return SwiftStorage(settings)
