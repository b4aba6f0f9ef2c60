"""The one place that builds a storage: ``--storage`` name -> bare driver -> wrappers.

Each name has a settings builder (freezer/common/settings.py: options and environment -> typed
settings) and a driver factory (settings -> bare driver); drivers never see the options. ``build``
and ``wrap`` add retries (with resumed downloads) to every network driver, so each behaves the same
whichever protocol it speaks. That wrapper is the only retry layer: drivers set their client
libraries (boto3, swiftclient) not to retry, so one failure is never retried by two loops. Tests
build drivers through ``wrap`` too, and reach the bare driver with ``unwrap``.
"""

from __future__ import annotations

import importlib
from typing import Any

from freezer.common import settings
from freezer.errors import FreezerError
from freezer.storage.base import Storage

# --storage name -> (settings builder, "module:function" building the bare driver from those settings)
BUILDERS = {
    "local": (settings.local, "freezer.storage.local:from_settings"),
    "ftp": (settings.ftp, "freezer.storage.ftp:from_settings"),
    "ftps": (settings.ftps, "freezer.storage.ftp:from_settings"),
    "sftp": (settings.sftp, "freezer.storage.sftp:sftp_from_settings"),
    "ssh": (settings.ssh, "freezer.storage.sftp:ssh_from_settings"),
    "s3": (settings.s3, "freezer.storage.s3:from_settings"),
    "swift": (settings.swift, "freezer.storage.swift:from_settings"),
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

    driver = wrap(bare(conf), patience=conf.storage_retry_time)
    return throttle.limited(driver, settings.limits(conf))  # --upload-limit, --download-limit


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


def bare(conf) -> Storage:
    """The bare driver ``conf.storage`` names, given the settings built from ``conf``."""
    build_settings, factory_path = BUILDERS[conf.storage]
    factory = _factory(factory_path, conf.storage)  # a driver missing from this build is said first
    return factory(build_settings(conf))


def _factory(path: str, name: str):
    module_name, function = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise FreezerError(f"--storage {name} is not available in this build ({exc.name} missing)") from exc
    return getattr(module, function)
