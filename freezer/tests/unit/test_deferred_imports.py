"""oslo.config's rarely used imports load on first use, and work as before once they do."""

import subprocess
import sys
import textwrap

import testtools

from freezer.common import deferred_imports


def run_fresh(code: str) -> str:
    """``code`` in a new interpreter (this one imported everything already); its stdout."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    if proc.returncode:
        raise AssertionError(proc.stderr)
    return proc.stdout.strip()


class TestDeferredImports(testtools.TestCase):
    def test_the_agent_starts_without_loading_them(self):
        loaded = run_fresh("""
            import sys
            import freezer.main
            print(sorted(name for name in sys.modules if name.split(".")[0] in ("netaddr", "rfc3986", "stevedore")
                         and not isinstance(sys.modules[name], freezer.common.deferred_imports.DeferredModule)))
        """)
        self.assertEqual("[]", loaded)

    def test_oslo_config_types_that_use_them_still_work(self):
        out = run_fresh("""
            import freezer.main
            from oslo_config import types
            print(types.IPAddress()("192.0.2.1"), types.URI()("https://example.org/x"))
            try:
                types.IPAddress()("not-an-address")
            except ValueError:
                print("refused")
        """)
        self.assertEqual("192.0.2.1 https://example.org/x\nrefused", out)

    def test_a_submodule_import_and_an_attribute_load_the_real_module(self):
        out = run_fresh("""
            import freezer
            import stevedore
            import stevedore.extension
            from netaddr.core import AddrFormatError
            import netaddr
            from rfc3986 import validators
            import rfc3986
            print(stevedore.ExtensionManager is stevedore.extension.ExtensionManager,
                  netaddr.AddrFormatError is AddrFormatError, rfc3986.validators is validators,
                  netaddr.IPNetwork("10.0.0.0/8").size)
        """)
        self.assertEqual("True True True 16777216", out)

    def test_oslo_utils_netutils_catches_netaddr_errors(self):
        out = run_fresh("""
            import freezer.main
            from oslo_utils import netutils
            print(netutils.is_valid_ipv4("192.0.2.1"), netutils.is_valid_ipv4("300.1.1.1"))
        """)
        self.assertEqual("True False", out)

    def test_a_name_not_installed_is_left_alone(self):
        deferred_imports.defer(("no_such_module_for_freezer",))
        self.assertNotIn("no_such_module_for_freezer", sys.modules)
