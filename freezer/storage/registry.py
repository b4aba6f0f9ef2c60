"""The one place that builds a storage: ``--storage`` name -> bare driver -> wrappers.

Drivers' ``*_from_conf`` return the bare driver; ``build`` and ``wrap`` add retries (with resumed
downloads) to every network driver, so each behaves the same whichever protocol it speaks. That
wrapper is the only retry layer: drivers set their client libraries (boto3, swiftclient) not to
retry, so one failure is never retried by two loops. Tests build drivers through ``wrap`` too, and
reach the bare driver with ``unwrap``.
"""

from __future__ import annotations

import importlib
from typing import Any

from freezer.errors import FreezerError
from freezer.storage.base import Storage

# --storage name -> "module:function" building the bare driver from the options.
BUILDERS = {
    "local": "freezer.storage.local:from_conf",
    "ftp": "freezer.storage.ftp:ftp_from_conf",
    "ftps": "freezer.storage.ftp:ftps_from_conf",
    "sftp": "freezer.storage.sftp:sftp_from_conf",
    "ssh": "freezer.storage.sftp:ssh_from_conf",
    "s3": "freezer.storage.s3:from_conf",
    "swift": "freezer.storage.swift:from_conf",
}

# Drivers with no connection to lose: a local or mounted directory fails the same way on every
# attempt (missing, denied, full), so retrying would only delay the error.
UNWRAPPED = frozenset({"local"})


def build(conf) -> Storage:
    """The driver named by ``--storage``, wrapped by ``wrap``."""
    sections = getattr(conf, "freezer_storages", None)
    if sections:  # [storage:NAME] sections in --config: every one of them, as upstream
        from freezer.storage.multiple import MultiStorage

        return MultiStorage([build(section) for section in sections], [section.section for section in sections])
    names = ", ".join(BUILDERS)
    if not conf.storage:
        raise FreezerError(f"--storage is required: choose one of {names}")
    if conf.storage not in BUILDERS:
        raise FreezerError(f"unknown --storage {conf.storage!r}: choose one of {names}")
    if not conf.container:
        raise FreezerError("--container is required: the directory on the storage that holds backups")
    from freezer.storage import throttle

    driver = wrap(_builder(conf.storage)(conf), patience=conf.storage_retry_time)
    return throttle.limited(driver, conf)  # --upload-limit, --download-limit


def wrap(driver: Storage, **retry_options: Any) -> Storage:
    """``driver`` with retries and resumed downloads, unless it is local; ``retry_options`` go to Retrying."""
    from freezer.storage.retry import Retrying

    if driver.kind in UNWRAPPED or isinstance(driver, Retrying):
        return driver
    return Retrying(driver, **retry_options)


def unwrap(storage: Storage) -> Storage:
    """The bare driver inside any wrappers."""
    while hasattr(storage, "inner"):
        storage = storage.inner
    return storage


def _builder(name: str):
    module_name, function = BUILDERS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise FreezerError(f"--storage {name} is not available in this build ({exc.name} missing)") from exc
    return getattr(module, function)
