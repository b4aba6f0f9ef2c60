"""Libraries oslo.config imports at start-up but uses only for options the agent does not have.

``oslo_config.types`` imports netaddr and rfc3986 (for IP address and URI options) and
``oslo_config.cfg`` imports stevedore (for configuration source drivers): about 40 ms of every
start-up of ~150 ms. Each is replaced by a stand-in module that imports the real one on first
attribute access. importlib's LazyLoader cannot do this on Python 3.11: the next ``import`` of
the name reads ``__spec__`` and that already loads the module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types

DEFERRED = ("netaddr", "rfc3986", "stevedore")
_LOCK = threading.RLock()


class DeferredModule(types.ModuleType):
    """Stands in for a package in ``sys.modules`` until an attribute it does not hold is asked for."""

    def __getattr__(self, attr: str):
        return getattr(self._real(), attr)

    def _real(self) -> types.ModuleType:
        with _LOCK:
            name = self.__name__
            if sys.modules.get(name) is self:
                del sys.modules[name]
                self.__dict__.update(importlib.import_module(name).__dict__)
            return sys.modules[name]


class AlreadyImported(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import pkg.sub`` through a stand-in: reading its ``__path__`` imported the package, and with it
    maybe ``pkg.sub``, after the import system looked; hand that module back instead of a second copy."""

    def find_spec(self, name: str, path, target=None) -> importlib.machinery.ModuleSpec | None:
        if name.partition(".")[0] in DEFERRED and name in sys.modules:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return sys.modules[spec.name]

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing: the module ran when it was first imported."""


def defer(names: tuple[str, ...] = DEFERRED) -> None:
    """Put a stand-in in ``sys.modules`` for each of ``names`` that is installed and not yet imported."""
    if not any(isinstance(finder, AlreadyImported) for finder in sys.meta_path):
        sys.meta_path.insert(0, AlreadyImported())
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue  # not installed: its import fails where it is written, as before
        stand_in = DeferredModule(name)
        stand_in.__spec__ = spec
        sys.modules[name] = stand_in
