"""known_hosts lines with markers (``@revoked``, ``@cert-authority``) and broken lines, against OpenSSH sshd."""

import os

from freezer.testing.sshd import Sshd, keygen
from freezer.tests.functional.base import AgentTestCase, write

#: a key nobody holds, for lines about other hosts
OTHER_KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


class TestKnownHostsMarkers(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.server = self.useFixture(Sshd(self.tmp))
        self.storage_args = lambda: self.server.agent_options()
        with open(self.server.host_key + ".pub") as public:
            self.kind, self.key = public.read().split()[:2]
        self.name = f"[127.0.0.1]:{self.server.port}"
        write(f"{self.source}/f", "x")

    def known_hosts(self, *lines: str) -> None:
        write(self.server.known_hosts, "".join(line + "\n" for line in lines))

    def lines(self) -> list[str]:
        with open(self.server.known_hosts) as handle:
            return handle.read().splitlines()

    def test_revoked_key_refused_even_when_also_listed(self):
        self.known_hosts(f"{self.name} {self.kind} {self.key}", f"@revoked * {self.kind} {self.key}")
        proc = self.agent("--path-to-backup", self.source, expect=None)
        self.assertOneLineError(proc, "@revoked", f"{self.server.known_hosts} line 2", "--ssh-known-hosts")
        self.assertNotIn("unexpected", proc.stderr)

    def test_markers_for_other_hosts_and_broken_lines_do_not_stop_a_known_host(self):
        self.known_hosts(f"@cert-authority *.example.com ssh-ed25519 {OTHER_KEY}",
                         f"@revoked other.example.com ssh-ed25519 {OTHER_KEY}",
                         "garbage.example.com ssh-ed25519 not-base64!!",
                         f"{self.name} {self.kind} {self.key}")
        proc = self.agent("--path-to-backup", self.source)
        self.assertIn("line 3", proc.stderr)  # the broken line, skipped with a warning
        self.assertNotIn("learnt", proc.stderr)

    def test_host_vouched_for_only_by_a_certificate_authority_is_refused_not_learnt(self):
        ca = keygen(os.path.join(self.tmp, "ca"))
        with open(ca + ".pub") as public:
            ca_kind, ca_key = public.read().split()[:2]
        self.known_hosts(f"@cert-authority [127.0.0.1]:* {ca_kind} {ca_key}")
        proc = self.agent("--path-to-backup", self.source, expect=None)
        self.assertOneLineError(proc, "@cert-authority", "line 1", "not supported", "ssh-keyscan")
        self.assertEqual(1, len(self.lines()))  # nothing learnt

    def test_wildcard_and_negated_patterns(self):
        self.known_hosts(f"[127.0.0.?]:{self.server.port},!nothing {self.kind} {self.key}")
        proc = self.agent("--path-to-backup", self.source)
        self.assertNotIn("learnt", proc.stderr)
        self.known_hosts(f"[127.0.0.*]:*,![127.0.0.1]:{self.server.port} {self.kind} {self.key}")
        proc = self.agent("--path-to-backup", self.source)
        self.assertIn("learnt", proc.stderr)  # excluded by the negation: an unknown host, learnt
