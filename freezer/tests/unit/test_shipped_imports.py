"""Shipped code (the agent, the demo, the benchmarks) never imports the test suite."""

import os
import re

import testtools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SHIPPED = ("freezer", "freezer_ui_ftp", "benchmarks", "tools")
TESTS = os.path.join(ROOT, "freezer", "tests")
IMPORTS_TESTS = re.compile(r"^\s*(from|import)\s+freezer\.tests\b|^\s*from\s+freezer\s+import\s+.*\btests\b|"
                           r"freezer\.tests\.", re.M)


def shipped_files():
    for top in SHIPPED:
        for directory, subdirs, names in os.walk(os.path.join(ROOT, top)):
            subdirs[:] = [d for d in subdirs if os.path.join(directory, d) != TESTS and d != "__pycache__"]
            for name in names:
                if name.endswith((".py", ".sh")):
                    yield os.path.join(directory, name)


class TestShippedCodeImportsNoTests(testtools.TestCase):
    def test_no_shipped_module_names_freezer_tests(self):
        offenders = []
        for path in shipped_files():
            with open(path, encoding="utf-8") as handle:
                if IMPORTS_TESTS.search(handle.read()):
                    offenders.append(os.path.relpath(path, ROOT))
        self.assertEqual([], offenders)
