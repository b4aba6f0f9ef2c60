"""Stream stages: digests, verification, prefetch, pipelines and codecs."""

import hashlib
import os
import subprocess
import tempfile
import threading

import fixtures
import testtools

from freezer.common import logs
from freezer.engine import cipher, codecs
from freezer.engine.streams import ChecksumError, Digest, Pipeline, PipelineError, ahead, prefetch, verified
from freezer.storage.ftp import FtpStorage
from freezer.storage.local import LocalStorage


class TestChunks(testtools.TestCase):
    def test_digest_counts_and_hashes(self):
        digest = Digest()
        self.assertEqual([b"ab", b"c"], list(digest.tap([b"ab", b"c"])))
        self.assertEqual((3, hashlib.sha256(b"abc").hexdigest()), (digest.size, digest.hexdigest()))

    def test_verified_passes_good_data(self):
        good = hashlib.sha256(b"abc").hexdigest()
        self.assertEqual([b"a", b"bc"], list(verified([b"a", b"bc"], good, 3, "x")))

    def test_verified_holds_back_last_chunk_of_bad_data(self):
        seen = []
        bad = verified([b"a", b"bc"], hashlib.sha256(b"abd").hexdigest(), 3, "x/data")
        error = self.assertRaises(ChecksumError, lambda: [seen.append(c) for c in bad])
        self.assertEqual([b"a"], seen)
        self.assertIn("x/data", str(error))

    def test_verified_checks_size(self):
        self.assertRaises(ChecksumError, list, verified([b"ab"], None, 3, "x"))

    def test_prefetch_keeps_order_and_raises_errors(self):
        self.assertEqual(list(range(50)), list(prefetch(iter(range(50)), depth=2)))

        def broken():
            yield b"x"
            raise ValueError("boom")

        self.assertRaises(ValueError, list, prefetch(broken()))

    def test_prefetch_stops_producer_when_consumer_leaves(self):
        produced = []

        def endless():
            while True:
                produced.append(1)
                yield b"x"

        stream = prefetch(endless(), depth=2)
        next(stream)
        stream.close()
        count = len(produced)
        self.assertLess(count, 10)

    def test_local_storage_streams_in_the_callers_thread(self):
        def producers():
            yield threading.current_thread()

        with tempfile.TemporaryDirectory() as root:
            local = LocalStorage(root)
        self.assertEqual([threading.current_thread()], list(ahead(producers(), local.streams_in_caller)))

    def test_network_storage_gets_chunks_from_a_thread_ahead(self):
        def producers():
            yield threading.current_thread()

        self.assertFalse(FtpStorage.streams_in_caller)
        [producer] = list(ahead(producers(), FtpStorage.streams_in_caller))
        self.assertEqual("prefetch", producer.name)


class TestPipeline(testtools.TestCase):
    def test_output_of_chained_processes(self):
        pipeline = Pipeline([["printf", "hello"], ["tr", "a-z", "A-Z"]], feed_input=False, read_output=True)
        self.assertEqual(b"HELLO", b"".join(pipeline.output_chunks()))

    def test_failure_names_the_process_and_its_message(self):
        pipeline = Pipeline([["sh", "-c", "echo broken >&2; exit 3"]], feed_input=False, read_output=True)
        error = self.assertRaises(PipelineError, b"".join, pipeline.output_chunks())
        self.assertIn("sh failed (exit 3): broken", str(error))

    def test_feed(self):
        out = os.path.join(self.useFixture(fixtures.TempDir()).path, "out")
        pipeline = Pipeline([["gzip", "-c"], ["sh", "-c", f"gzip -dc > {out}"]], feed_input=True, read_output=False)
        pipeline.feed([b"abc", b"def"])
        with open(out, "rb") as handle:
            self.assertEqual(b"abcdef", handle.read())


class TestCodecs(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.pass_file = os.path.join(self.tmp, "pass")
        with open(self.pass_file, "w") as handle:
            handle.write("correct horse\n")

    def test_every_compression_round_trips(self):
        data = os.urandom(1000) + b"text " * 5000
        for name in codecs.COMPRESSIONS:
            packed = _through([codecs.compress_command(name)], data)
            self.assertEqual(data, _through([codecs.decompress_command(name)], packed), name)

    def test_encryption_is_what_openssl_cli_reads(self):
        data = b"secret data " * 100_000
        sealed = b"".join(cipher.encrypt([data[:7], data[7:70_000], data[70_000:]], self.pass_file))
        self.assertTrue(sealed.startswith(b"Salted__"))
        self.assertEqual(len(data) + cipher.HEADER_SIZE, len(sealed))
        self.assertEqual(data, self.openssl("-d", sealed))

    def test_what_openssl_cli_encrypts_is_read_back(self):
        data = os.urandom(300_000)
        sealed = self.openssl("-e", data)
        for cuts in ((), (3,), (16,), (5, 9, 40_000)):
            pieces = [sealed[a:b] for a, b in zip((0, *cuts), (*cuts, len(sealed)), strict=True)]
            self.assertEqual(data, b"".join(cipher.decrypt(pieces, self.pass_file)), cuts)

    def test_pass_file_is_read_as_openssl_reads_it(self):
        for content in (b"p", b"p\n", b"p\r\n", b" p q \nsecond line\n", b"x" * 2000):
            with open(self.pass_file, "wb") as handle:
                handle.write(content)
            self.assertEqual(b"data", self.openssl("-d", b"".join(cipher.encrypt([b"data"], self.pass_file))))
            self.assertEqual(b"data", b"".join(cipher.decrypt([self.openssl("-e", b"data")], self.pass_file)))

    def test_data_that_is_not_encrypted_is_one_clear_error(self):
        for stored in ([b""], [b"Salted"], [b"plain tar data, no header"]):
            error = self.assertRaises(cipher.NotEncrypted, b"".join, cipher.decrypt(stored, self.pass_file))
            self.assertIn("--encrypt-pass-file", str(error))

    def openssl(self, direction: str, data: bytes) -> bytes:
        argv = ["openssl", "enc", direction, "-aes-256-cfb", "-md", "sha256", "-pass", f"file:{self.pass_file}"]
        return subprocess.run(argv + (["-salt"] if direction == "-e" else []), input=data, capture_output=True,
                              check=True).stdout

    def test_missing_pass_file_names_the_option(self):
        error = self.assertRaises(codecs.FreezerError, codecs.check_pass_file, "/nonexistent")
        self.assertIn("--encrypt-pass-file", str(error))

    def test_unknown_compression(self):
        self.assertRaises(codecs.FreezerError, codecs.compress_command, "lzma9")

    def test_missing_compressor_is_one_error_naming_the_binary(self):
        empty = self.useFixture(fixtures.TempDir()).path
        self.useFixture(fixtures.EnvironmentVariable("PATH", empty))
        for name, binary in (("gzip", "gzip"), ("bzip2", "bzip2")):
            for build in (codecs.compress_command, codecs.decompress_command):
                error = self.assertRaises(codecs.FreezerError, build, name)
                self.assertIn(binary, str(error))
                self.assertIn("not installed", str(error))


class TestSecretMask(testtools.TestCase):
    def test_mask_replaces_every_secret(self):
        mask = logs.SecretMask(["hunter2", ""])
        self.assertEqual("login u/*** failed", mask.mask("login u/hunter2 failed"))

    def test_short_secret_leaves_option_names_readable(self):
        mask = logs.SecretMask(["p"])
        self.assertEqual("check --ftp-host and --ftp-port (password ***)",
                         mask.mask("check --ftp-host and --ftp-port (password p)"))

    def test_long_secret_masked_inside_words_and_regex_characters_are_literal(self):
        mask = logs.SecretMask(["s3cr3t-pa$$(word)", "correcthorse"])
        self.assertEqual("x***y and ***", mask.mask("xs3cr3t-pa$$(word)y and correcthorse"))
        self.assertEqual("no secret here", mask.mask("no secret here"))


def _through(stages, data):
    """Run ``data`` through command stages and return the output."""
    stages = [s for s in stages if s]
    if not stages:
        return data
    first = subprocess.run(stages[0], input=data, capture_output=True, check=True).stdout
    return _through(stages[1:], first)


class TestParts(testtools.TestCase):
    def test_regroups_into_parts_of_at_least_size(self):
        from freezer.storage.chunking import parts

        self.assertEqual([b"aaab", b"bb"], list(parts([b"aa", b"ab", b"b", b"b"], 3)))
        self.assertEqual([b"abc"], list(parts([b"abc"], 3)))
        self.assertEqual([b""], list(parts([], 3)))
        self.assertEqual([b"a"], list(parts([b"a"], 3)))
