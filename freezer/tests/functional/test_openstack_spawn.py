"""The OpenStack test bed's servers: one that exits before it listens is started again, and its log is shown."""

import os
import sys

import fixtures
import testtools

from freezer.testing.servers import free_port
from freezer.tests import openstack

# Exits with 1 at its first start (and leaves a mark); listens on the port at the next.
FLAKY = """
import os, socket, sys, time
mark, port = sys.argv[1], int(sys.argv[2])
print("starting", flush=True)
if not os.path.exists(mark):
    open(mark, "w").close()
    sys.exit("address already in use")
server = socket.create_server(("127.0.0.1", port))
time.sleep(60)
"""


class TestSpawnListening(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.log = os.path.join(self.dir, "server.out")

    def argv(self, mark: str, port: int) -> list[str]:
        return [sys.executable, "-c", FLAKY, mark, str(port)]

    def test_a_server_that_exits_before_it_listens_is_started_again(self):
        port = free_port()
        proc = openstack.spawn_listening(self.argv(os.path.join(self.dir, "mark"), port), dict(os.environ), port,
                                         30, self.log)
        self.addCleanup(openstack._stop, proc)
        with open(self.log) as log:
            self.assertEqual(2, log.read().count("starting"))  # both starts in one log

    def test_one_that_never_listens_fails_with_its_log(self):
        self.patch(openstack, "START_ATTEMPTS", 2)
        always = os.path.join(self.dir, "missing", "mark")  # cannot be made: every start exits
        port = free_port()
        error = self.assertRaises(RuntimeError, openstack.spawn_listening, self.argv(always, port),
                                  dict(os.environ), port, 30, self.log)
        self.assertIn("(attempt 2)", str(error))
        self.assertIn("starting", str(error))
        self.assertIn("exited with 1", str(error))
