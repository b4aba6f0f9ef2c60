"""S3 storage on boto3: ``--container bucket/prefix``, multipart uploads streamed in parts."""

from __future__ import annotations

import itertools
import logging
import posixpath
import uuid
from collections.abc import Iterable, Iterator

from freezer.common.settings import S3Settings
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
from freezer.storage import chunking
from freezer.storage.base import CLAIM_MARKER, Storage

LOG = logging.getLogger(__name__)
MIN_PART = 5 * 1024 * 1024
READ_CHUNK = 1024 * 1024
AUTH_CODES = {"SignatureDoesNotMatch": "--secret-key", "InvalidAccessKeyId": "--access-key",
              "InvalidToken": "--access-key", "ExpiredToken": "--access-key"}
SPACE_CODES = {"QuotaExceeded", "XMinioStorageFull", "EntityTooLarge", "InsufficientStorage"}
BUSY_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestTimeout",
              "ServiceUnavailable", "InternalError", "TooManyRequests"}


class S3Storage(Storage):
    """Objects under ``prefix`` in one bucket; a path's ``/`` separates key parts."""

    kind = "s3"

    def __init__(self, settings: S3Settings):
        self.settings = settings
        self._client = None
        self._bucket_checked = False
        self._token = uuid.uuid4().hex.encode()  # written into our claims: a retried claim knows its own
        self._claimed: set[str] = set()  # paths this instance won: claiming one again is False

    def describe(self) -> str:
        return self.settings.where

    @property
    def client(self):
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self):
        import boto3
        from botocore.config import Config

        s = self.settings
        config = Config(connect_timeout=s.timeout, read_timeout=s.timeout, signature_version="s3v4",
                        retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"})
        return boto3.session.Session().client(
            "s3", endpoint_url=s.endpoint, aws_access_key_id=s.access_key, aws_secret_access_key=s.secret_key,
            region_name=s.region, verify=s.cacert if s.cacert else True, config=config)

    def key(self, path: str) -> str:
        return posixpath.join(self.settings.prefix, path.strip("/")) if self.settings.prefix else path.strip("/")

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        self._ensure_bucket()
        key = self.key(path)
        parts = chunking.parts(chunks, max(self.settings.part_size, MIN_PART))
        first = next(parts, b"")
        second = next(parts, None)
        if second is None:
            self._call("upload", path, self.client.put_object, Bucket=self.settings.bucket, Key=key, Body=first)
            return len(first)
        return self._multipart(path, key, itertools.chain((first, second), parts))

    def _multipart(self, path: str, key: str, parts: Iterator[bytes]) -> int:
        bucket = self.settings.bucket
        upload = self._call("upload", path, self.client.create_multipart_upload, Bucket=bucket, Key=key)
        upload_id, done, total = upload["UploadId"], [], 0
        try:
            for number, body in enumerate(parts, start=1):
                reply = self._call("upload", path, self.client.upload_part, Bucket=bucket, Key=key,
                                   UploadId=upload_id, PartNumber=number, Body=body)
                done.append({"ETag": reply["ETag"], "PartNumber": number})
                total += len(body)
            self._call("upload", path, self.client.complete_multipart_upload, Bucket=bucket, Key=key,
                       UploadId=upload_id, MultipartUpload={"Parts": done})
        except BaseException:
            self._abort(key, upload_id)
            raise
        return total

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.settings.bucket, Key=key, UploadId=upload_id)
        except Exception as exc:  # noqa: BLE001 - the upload's own error matters more
            LOG.warning("could not abort the multipart upload of %s: %s", key, exc)

    def get_stream(self, path: str, offset: int = 0) -> Iterator[bytes]:
        ranged = {"Range": f"bytes={offset}-"} if offset else {}
        reply = self._call("download", path, self.client.get_object, Bucket=self.settings.bucket, Key=self.key(path),
                           **ranged)
        body = reply["Body"]
        try:
            yield from _guarded(body.iter_chunks(READ_CHUNK), self, path)
        finally:
            body.close()

    def listdir(self, path: str) -> list[str]:
        prefix = self.key(path).rstrip("/") + "/" if self.key(path) else ""
        names = set()
        for page in self._pages(path, Prefix=prefix, Delimiter="/"):
            names.update(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
            names.update(o["Key"][len(prefix):] for o in page.get("Contents", []))
        return sorted(n for n in names if n)

    def rmtree(self, path: str) -> None:
        self._claimed = {p for p in self._claimed if p != path and not p.startswith(path.rstrip("/") + "/")}
        key = self.key(path)
        below = key.rstrip("/") + "/"
        keys = [o["Key"] for page in self._pages(path, Prefix=below) for o in page.get("Contents", [])]
        doomed = [*keys, key, *folder_markers(keys, below)]
        for start in range(0, len(doomed), 1000):
            batch = [{"Key": k} for k in doomed[start:start + 1000]]
            self._call("remove", path, self.client.delete_objects, Bucket=self.settings.bucket,
                       Delete={"Objects": batch, "Quiet": True})

    def size(self, path: str) -> int:
        reply = self._call("size of", path, self.client.head_object, Bucket=self.settings.bucket, Key=self.key(path))
        return int(reply["ContentLength"])

    def claim(self, path: str) -> bool:
        """Put ``path/.claim`` only if absent (``If-None-Match: *``); one that holds our token is ours."""
        if path in self._claimed:
            return False
        self._ensure_bucket()
        if self._put_marker(posixpath.join(path, CLAIM_MARKER)):
            self._claimed.add(path)
            return True
        return False

    def _put_marker(self, marker: str) -> bool:
        try:
            self.client.put_object(Bucket=self.settings.bucket, Key=self.key(marker), Body=self._token,
                                   IfNoneMatch="*")
            return True
        except Exception as exc:
            mapped = self._error(exc, "claim", marker)
            if not isinstance(mapped, AlreadyExists):
                raise mapped from exc
        # Our own earlier attempt may have succeeded with its reply lost (a retry after a dropped connection).
        try:
            return self.get_bytes(marker) == self._token
        except NotFound:
            return False

    def _pages(self, path: str, **kwargs) -> Iterator[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.settings.bucket, **kwargs)
        try:
            yield from pages
        except Exception as exc:
            mapped = self._error(exc, "list", path)
            if isinstance(mapped, NotFound):
                return
            raise mapped from exc

    def _ensure_bucket(self) -> None:
        """Create the bucket on first upload when it does not exist yet."""
        if self._bucket_checked:
            return
        bucket = self.settings.bucket
        try:
            self.client.head_bucket(Bucket=bucket)
        except Exception as exc:
            mapped = self._error(exc, "check bucket", bucket)
            if not isinstance(mapped, NotFound):
                raise mapped from exc
            LOG.info("creating bucket %s", bucket)
            try:
                self.client.create_bucket(Bucket=bucket)
            except Exception as exc:  # another agent may have created it meanwhile
                if "BucketAlreadyOwnedByYou" not in str(getattr(exc, "response", {}).get("Error", {}).get("Code")):
                    raise self._error(exc, "create bucket", bucket) from exc
        self._bucket_checked = True

    def _call(self, action: str, path: str, function, **kwargs):
        try:
            return function(**kwargs)
        except Exception as exc:
            raise self._error(exc, action, path) from exc

    def _error(self, exc: Exception, action: str, path: str) -> Exception:
        return s3_error(exc, action, path, self.settings)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def reset(self) -> None:
        self.close()


class AlreadyExists(StorageError):
    """A conditional put found the object there already (HTTP 412/409)."""


def folder_markers(keys: list[str], top: str) -> list[str]:
    """``dir/`` keys from ``top`` down to each key's parent, deepest first.

    Some S3 servers (SeaweedFS, consoles that create folders) keep these; deleting an absent key is harmless.
    """
    folders = {top}
    for key in keys:
        parts = key[len(top):].split("/")[:-1]
        folders.update(top + "/".join(parts[:depth]) + "/" for depth in range(1, len(parts) + 1))
    return sorted(folders, key=lambda folder: (-folder.count("/"), folder))


def _guarded(chunks: Iterator[bytes], storage: S3Storage, path: str) -> Iterator[bytes]:
    try:
        yield from chunks
    except Exception as exc:
        raise storage._error(exc, "download", path) from exc


def s3_error(exc: Exception, action: str, path: str, s: S3Settings) -> Exception:
    """One line naming what went wrong and the option to change."""
    from botocore import exceptions as bx

    if isinstance(exc, FreezerError):
        return exc
    if isinstance(exc, bx.ParamValidationError):
        return FreezerError(f"S3 refused the request for {path}: {str(exc).splitlines()[-1].strip()}")
    if isinstance(exc, bx.NoCredentialsError):
        return AuthError("no S3 credentials: give --access-key and --secret-key (or $ACCESS_KEY, $SECRET_KEY)")
    if isinstance(exc, bx.SSLError):
        return TLSError(f"TLS with {s.endpoint} failed: check --s3-cacert or the endpoint's certificate")
    if isinstance(exc, bx.EndpointConnectionError) and never_connected(exc):  # after botocore's own retries
        return Unreachable(f"cannot reach S3 endpoint {s.endpoint or 'of AWS'}: check --endpoint")
    if isinstance(exc, (bx.ConnectionError, bx.ReadTimeoutError, bx.ResponseStreamingError,
                        bx.IncompleteReadError)):
        return ConnectError(f"connection to {s.where} lost during {action} {path}: {reason(exc)}")
    if isinstance(exc, bx.ClientError):
        return _client_error(exc, action, path, s)
    if isinstance(exc, OSError):
        return ConnectError(f"connection to {s.where} failed during {action} {path}: {reason(exc)}")
    return exc


def _client_error(exc, action: str, path: str, s: S3Settings) -> Exception:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in AUTH_CODES:
        return AuthError(f"S3 at {s.endpoint or 'AWS'} refused the credentials ({code}): check {AUTH_CODES[code]}")
    if code == "NoSuchBucket" or (code in ("404", "NotFound") and action == "check bucket"):
        return NotFound(f"bucket {s.bucket!r} does not exist: check --container")
    if action == "claim" and (code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)):
        return AlreadyExists(f"{path} already exists in {s.where}")
    if code in ("NoSuchKey", "404", "NotFound"):
        return NotFound(f"{path} not found in {s.where}")
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        return PermissionDenied(f"S3 denied {action} {path} in {s.where}: check the key's permissions")
    if code in SPACE_CODES or status == 507:
        return NoSpace(f"S3 at {s.where} is out of space or quota during {action} {path} ({code})")
    if code == "InvalidBucketName":
        return FreezerError(f"{s.bucket!r} is not a valid bucket name: check --container")
    kind = ServerBusy if code in BUSY_CODES or status == 429 or (status or 0) >= 500 else StorageError
    return kind(f"S3 {action} {path} failed: {code or status}: {error.get('Message', '')}".rstrip(": "))


def from_settings(settings: S3Settings) -> Storage:
    """``--storage s3``."""
    try:
        import boto3  # noqa: F401
    except ModuleNotFoundError as exc:
        raise FreezerError("--storage s3 needs boto3: pip install boto3") from exc
    return S3Storage(settings)
