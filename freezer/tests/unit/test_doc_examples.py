"""The job examples in doc/source/scheduler.rst are valid jobs whose keys the agent knows."""

import os
import re

import testtools

from freezer.common import config
from freezer.scheduler import jobdoc

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "doc", "source", "scheduler.rst")


def literal_after(label: str) -> str:
    """The first ``::`` literal block after ``.. _label:`` in scheduler.rst, dedented."""
    with open(DOC, encoding="utf-8") as handle:
        text = handle.read().split(f".. _{label}:", 1)[1]
    block = re.search(r"::\n\n((?:    .*\n|\n)+)", text).group(1)
    return "\n".join(line[4:] for line in block.splitlines())


class TestBoundedJobExample(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.job = jobdoc.parse(literal_after("bounded-job"), "scheduler.rst")

    def test_is_a_valid_job(self):
        jobdoc.validate(self.job, "scheduler.rst")

    def test_every_key_is_an_agent_option(self):
        for action in self.job["job_actions"]:
            self.assertEqual([], config.apply_ini(config.build([]), action["freezer_action"]))

    def test_backup_is_bounded_and_admin_prunes(self):
        backup, admin = (a["freezer_action"] for a in self.job["job_actions"])
        self.assertEqual(("backup", 6), (backup["action"], backup["max_level"]))
        self.assertEqual(("admin", 30), (admin["action"], admin["remove_older_than"]))
