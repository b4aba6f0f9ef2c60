"""S3 storage on boto3: ``--container bucket/prefix``, multipart uploads streamed in parts."""

from __future__ import annotations

import functools
import logging
import posixpath
from collections.abc import Iterator

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
from freezer.storage.base import CLAIM_MARKER, Storage
from freezer.storage.object_store import ObjectStore, directory_prefix

LOG = logging.getLogger(__name__)
MIN_PART = 5 * 1024 * 1024
READ_CHUNK = 1024 * 1024
AUTH_CODES = {"SignatureDoesNotMatch": "--secret-key", "InvalidAccessKeyId": "--access-key",
              "InvalidToken": "--access-key", "ExpiredToken": "--access-key"}
SPACE_CODES = {"QuotaExceeded", "XMinioStorageFull", "EntityTooLarge", "InsufficientStorage"}
BUSY_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestTimeout",
              "ServiceUnavailable", "InternalError", "TooManyRequests"}


class S3Storage(ObjectStore):
    """Objects under ``prefix`` in one bucket: multipart uploads, conditional puts for claims."""

    kind = "s3"

    @property
    def client(self):
        return self.session

    @property
    def part_size(self) -> int:
        return max(self.settings.part_size, MIN_PART)

    def _connect(self):
        import boto3
        from botocore.config import Config

        s = self.settings
        # One attempt per request: the Retrying wrapper is the only retry layer. ``total_max_attempts``
        # counts the first attempt; ``max_attempts`` would count retries only (3 meant 4 attempts).
        config = Config(connect_timeout=s.timeout, read_timeout=s.timeout, signature_version="s3v4",
                        retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})
        return boto3.session.Session().client(
            "s3", endpoint_url=s.endpoint, aws_access_key_id=s.access_key, aws_secret_access_key=s.secret_key,
            region_name=s.region, verify=s.cacert if s.cacert else True, config=config)

    def _put_object(self, path: str, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.settings.bucket, Key=key, Body=body)

    def _put_parts(self, path: str, key: str, parts: Iterator[bytes]) -> int:
        bucket = self.settings.bucket
        upload = self.upload_request("upload", path, lambda: self.client.create_multipart_upload(Bucket=bucket,
                                                                                                 Key=key))
        upload_id, done, total = upload["UploadId"], [], 0
        try:
            for number, body in enumerate(parts, start=1):
                reply = self.upload_request("upload", path, functools.partial(
                    self._upload_part, key, upload_id, number, body))
                done.append({"ETag": reply["ETag"], "PartNumber": number})
                total += len(body)
            self.upload_request("upload", path, lambda: self.client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}))
        except BaseException:
            self._abort(key, upload_id)
            raise
        return total

    def _upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> dict:
        return self.client.upload_part(Bucket=self.settings.bucket, Key=key, UploadId=upload_id,
                                       PartNumber=number, Body=body)

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.settings.bucket, Key=key, UploadId=upload_id)
        except Exception as exc:  # noqa: BLE001 - the upload's own error matters more
            LOG.warning("could not abort the multipart upload of %s: %s", key, exc)

    def _download(self, path: str, key: str, offset: int) -> Iterator[bytes]:
        ranged = {"Range": f"bytes={offset}-"} if offset else {}
        body = self.client.get_object(Bucket=self.settings.bucket, Key=key, **ranged)["Body"]
        try:
            yield from body.iter_chunks(READ_CHUNK)
        finally:
            body.close()

    def _list(self, path: str, prefix: str, delimiter: str | None) -> Iterator[str]:
        grouped = {"Delimiter": delimiter} if delimiter else {}
        for page in self._pages(path, Prefix=prefix, **grouped):
            yield from (p["Prefix"] for p in page.get("CommonPrefixes", []))
            yield from (o["Key"] for o in page.get("Contents", []))

    def _remove(self, path: str, key: str, keys: list[str]) -> None:
        doomed = [*keys, key, *folder_markers(keys, directory_prefix(key) or "/")]
        for start in range(0, len(doomed), 1000):
            batch = [{"Key": k} for k in doomed[start:start + 1000]]
            self.request("remove", path, lambda batch=batch: self.client.delete_objects(
                Bucket=self.settings.bucket, Delete={"Objects": batch, "Quiet": True}))

    def _object_size(self, path: str, key: str) -> int:
        return int(self.client.head_object(Bucket=self.settings.bucket, Key=key)["ContentLength"])

    def _put_claim(self, path: str) -> bool:
        """Put ``path/.claim`` only if absent (``If-None-Match: *``); one that holds our token is ours."""
        marker = posixpath.join(path, CLAIM_MARKER)
        token = self._token.encode()
        try:
            self.client.put_object(Bucket=self.settings.bucket, Key=self.key(marker), Body=token, IfNoneMatch="*")
            return True
        except Exception as exc:
            mapped = self._error(exc, "claim", marker)
            if not isinstance(mapped, AlreadyExists):
                raise mapped from exc
        # Our own earlier attempt may have succeeded with its reply lost (a retry after a dropped connection).
        try:
            return self.get_bytes(marker) == token
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

    def _prepare(self) -> None:
        """Create the bucket on first upload when it does not exist yet."""
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

    def _error(self, exc: Exception, action: str, path: str) -> Exception:
        return s3_error(exc, action, path, self.settings)


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
    if isinstance(exc, bx.EndpointConnectionError) and never_connected(exc):
        return Unreachable(f"cannot reach S3 endpoint {s.endpoint or 'of AWS'}: check --endpoint")
    if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError, bx.IncompleteReadError)):  # reset, timeout, cut
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
