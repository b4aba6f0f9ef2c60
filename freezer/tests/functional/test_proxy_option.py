"""``--proxy``: s3 traffic goes through the proxy given, against SeaweedFS on 127.0.0.1.

The endpoint named to the agent has nothing listening; only a proxy that relays to SeaweedFS can
make the backup work (HTTP/1.1 servers take the proxy's absolute request line as is).
"""

import os
import socket

from freezer.tests import objectstores
from freezer.tests.functional.base import AgentTestCase, describe_tree, make_tree
from freezer.tests.proxy import CuttingProxy

NO_BYPASS = {"NO_PROXY": "", "no_proxy": "", "HTTP_PROXY": "", "HTTPS_PROXY": "", "http_proxy": "",
             "https_proxy": ""}


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ProxyTest(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.server = objectstores.seaweed()
        self.bucket = self.server.new_bucket()
        host, port = self.server.endpoint.rsplit("/", 1)[-1].split(":")
        self.proxy = self.useFixture(CuttingProxy(host, int(port)))
        make_tree(self.source)

    def storage_args(self):
        options = self.server.agent_options(f"{self.bucket}/via-proxy")
        options[options.index("--endpoint") + 1] = f"http://127.0.0.1:{dead_port()}"
        return options

    def test_backup_and_restore_through_the_proxy(self):
        proxy = ["--proxy", f"http://127.0.0.1:{self.proxy.port}"]
        self.agent("--action", "backup", "--path-to-backup", self.source, *proxy, env=NO_BYPASS)
        target = os.path.join(self.tmp, "restored")
        self.agent("--action", "restore", "--restore-abs-path", target, *proxy, env=NO_BYPASS)
        self.assertSameTree(describe_tree(self.source), target)

    def test_empty_proxy_removes_the_environments(self):
        url = f"http://127.0.0.1:{self.proxy.port}"
        env = dict(NO_BYPASS, HTTP_PROXY=url, http_proxy=url)
        reached = self.agent("--action", "info", env=env, expect=2)  # through the environment's proxy:
        self.assertOneLineError(reached, "no backup named")            # the store answered, it is empty
        proc = self.agent("--action", "info", "--proxy", "", env=env, expect=None)
        self.assertOneLineError(proc, "cannot reach S3 endpoint")
