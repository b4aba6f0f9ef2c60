"""Every upstream freezer-agent option parses: command line, ini file and job document.

The names come from ``upstream_options.txt`` (copied once from upstream's config module). An
option is either taken or refused with one line naming it: never "unrecognized", never dropped.
"""

import os

import fixtures
import testtools

from freezer.common import config, upstream
from freezer.errors import FreezerError
from freezer.scheduler import jobdoc, runner

HERE = os.path.dirname(os.path.abspath(__file__))

# A value each option accepts, where "x" will not do.
SAMPLES = {
    "action": "info", "mode": "fs", "engine": "tar", "storage": "local", "compression": "xz",
    "dereference-symlink": "soft", "lvm-snap-perm": "rw", "os-identity-api-version": "3",
    "hostname": "host1", "snapshot": "true", "max-segment-size": "1048576", "upload-limit": "10240",
    "download-limit": "2097152", "max-priority": "true",
    "restore-from-date": "2026-01-01T00:00:00", "remove-from-date": "2026-01-01T00:00:00",
    "encrypt-pass-file": os.path.join(HERE, "upstream_options.txt"),  # read when the options are
}
TYPED = {"IntOpt": "7", "FloatOpt": "1.5", "BoolOpt": "true"}


def upstream_options() -> list[tuple[str, str]]:
    """(name, oslo type) for each upstream option."""
    with open(os.path.join(HERE, "upstream_options.txt"), encoding="utf-8") as handle:
        return [tuple(line.split()) for line in handle if line.strip() and not line.startswith("#")]


def sample(name: str, kind: str) -> str:
    return SAMPLES.get(name, TYPED.get(kind, "x"))


def json_value(name: str, kind: str):
    """The sample as a job document holds it: JSON booleans and numbers."""
    text = sample(name, kind)
    if kind == "BoolOpt":
        return True
    return {"IntOpt": int, "FloatOpt": float}.get(kind, str)(text)


class TestUpstreamOptions(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def assertTakenOrRefused(self, name, build):
        """The option parses, or fails with the one line that names it."""
        try:
            build()
        except FreezerError as exc:
            self.assertIn(f"--{name} ", str(exc) + " ")
            self.assertIn("needs", str(exc))

    def test_list_is_upstreams(self):
        self.assertEqual(79, len(upstream_options()))

    def test_each_has_a_line_in_the_docs_table(self):
        doc = os.path.join(HERE, "..", "..", "..", "doc", "source", "upstream-options.rst")
        with open(doc, encoding="utf-8") as handle:
            text = handle.read()
        missing = [name for name, _kind in upstream_options() if f"   * - ``--{name}``\n" not in text]
        self.assertEqual([], missing)

    def test_each_on_the_command_line(self):
        empty_ini = os.path.join(self.tmp, "empty.ini")
        open(empty_ini, "w").close()
        for name, kind in upstream_options():
            value = empty_ini if name == "config" else sample(name, kind)
            argv = [f"--{name}"] if kind == "BoolOpt" else [f"--{name}", value]
            if name == "command":
                argv += ["--action", "exec"]
            self.assertTakenOrRefused(name, lambda argv=argv: config.build(argv))

    def test_each_in_an_ini_file(self):
        for name, kind in upstream_options():
            if name == "config":
                continue
            path = os.path.join(self.tmp, "job.ini")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(f"[default]\n{name} = {sample(name, kind)}\n")
                if name == "command":
                    handle.write("action = exec\n")
            self.assertTakenOrRefused(name, lambda path=path: config.build(["--config", path]))

    def test_none_is_unknown_in_an_ini_file(self):
        values = {name.replace("-", "_"): sample(name, kind) for name, kind in upstream_options()}
        values.pop("config")
        conf = config.build([])
        self.assertEqual([], config.apply_ini(conf, values))

    def test_each_in_a_job_document(self):
        for name, kind in upstream_options():
            if name == "config":
                continue
            key = name.replace("-", "_")
            value = json_value(name, kind)
            action = {key: value, **({"action": "exec"} if name == "command" else {})}
            job = jobdoc.prepare({"job_actions": [{"freezer_action": action}]}, "job")
            path = os.path.join(self.tmp, "action.ini")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(runner.ini_text(job["job_actions"][0]["freezer_action"]))
            self.assertTakenOrRefused(name, lambda path=path: config.build(["--config", path]))

    def test_refusal_is_one_line_naming_the_need(self):
        error = self.assertRaises(FreezerError, config.build, ["--mode", "nova"])
        self.assertEqual("--mode nova needs OpenStack Nova, which this agent does not back up: use --mode fs",
                         str(error))
        error = self.assertRaises(FreezerError, config.build, ["--cinder-vol-id", "abc"])
        self.assertIn("--cinder-vol-id needs OpenStack Cinder", str(error))
        error = self.assertRaises(FreezerError, config.build, ["--engine", "rsync"])
        self.assertIn("--engine rsync needs the rsync engine", str(error))

    def test_empty_refused_option_is_not_a_use(self):
        conf = config.build(["--nova-inst-id", ""])
        self.assertEqual("", conf.nova_inst_id)

    def test_command_outside_exec_is_refused(self):
        error = self.assertRaises(FreezerError, config.build, ["--command", "true"])
        self.assertIn("--action exec", str(error))

    def test_upstream_spellings(self):
        conf = config.build(["-F", "/etc", "-N", "etc", "-C", "/srv", "-m", "fs", "--snapshot", "true"])
        self.assertEqual(("/etc", "etc", "/srv", True), (conf.path_to_backup, conf.backup_name,
                                                         conf.container, conf.snapshot))
        self.assertFalse(config.build(["--snapshot", "False"]).snapshot)
        self.assertTrue(config.build(["--snapshot"]).snapshot)

    def test_deprecated_upstream_name(self):
        self.assertEqual("1", config.build(["--os-auth-ver", "1"]).os_identity_api_version)
        conf = config.build([])
        self.assertEqual([], config.apply_ini(conf, {"os_auth_ver": "3"}))
        self.assertEqual("3", conf.os_identity_api_version)

    def test_byte_rates(self):
        self.assertEqual((None, 1000, 10240, 3 * 1024 ** 2), tuple(
            upstream.byte_rate(v, "--upload-limit") for v in ("-1", "1000", "10K", "3M")))
        error = self.assertRaises(FreezerError, upstream.byte_rate, "fast", "--upload-limit")
        self.assertIn("--upload-limit", str(error))

    def test_max_priority_values(self):
        self.assertEqual([True, True, False, False, False],
                         [upstream.wants(v) for v in ("true", "yes", "False", "0", None)])


class TestProxy(testtools.TestCase):
    def test_url_sets_both_variables_and_drops_lowercase(self):
        env = {"http_proxy": "http://old:1", "PATH": "/bin"}
        upstream.apply_proxy("http://proxy.example:3128", env)
        self.assertEqual({"PATH": "/bin", "HTTP_PROXY": "http://proxy.example:3128",
                          "HTTPS_PROXY": "http://proxy.example:3128"}, env)

    def test_empty_removes_every_proxy(self):
        env = {"http_proxy": "a", "HTTPS_PROXY": "b", "PATH": "/bin"}
        upstream.apply_proxy("", env)
        self.assertEqual({"PATH": "/bin"}, env)

    def test_unset_leaves_the_environment(self):
        env = {"HTTP_PROXY": "http://keep:1"}
        upstream.apply_proxy(None, env)
        self.assertEqual({"HTTP_PROXY": "http://keep:1"}, env)

    def test_unknown_scheme_is_one_line(self):
        error = self.assertRaises(FreezerError, upstream.apply_proxy, "socks5://p:1", {})
        self.assertIn("--proxy socks5://p:1", str(error))
