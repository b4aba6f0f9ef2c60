"""Which names fail a backup as too long for tar: counted in bytes as stored, from tar's own lines."""

import os

import fixtures
import testtools

from freezer.engine import tar
from freezer.errors import FreezerError


class TestNameLengths(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.index = os.path.join(self.useFixture(fixtures.TempDir()).path, "index")
        self.useFixture(fixtures.FakeLogger())

    def check(self, lines: list[bytes], warnings: tuple[str, ...] = ()) -> None:
        with open(self.index, "wb") as handle:
            handle.writelines(line + b"\n" for line in lines)
        tar.check_name_lengths("/src", list(warnings), self.index)

    def test_longest_name_passes(self):
        self.check([b"./", b"./" + b"a" * 4093])

    def test_one_byte_more_fails_naming_it(self):
        error = self.assertRaises(FreezerError, self.check, [b"./" + b"a" * 4093 + b"b"])
        self.assertIn("aab below /src", str(error))
        self.assertIn("--exclude", str(error))

    def test_escaped_bytes_count_once(self):
        """tar prints a byte it does not show as ``\\ooo``: four characters, one byte of the name."""
        self.check([b"./" + b"\\303\\251" * 2046 + b"a"])  # 4095 bytes, printed in 16371 characters
        self.assertRaises(FreezerError, self.check, [b"./" + b"\\303\\251" * 2047])

    def test_a_directory_slash_does_not_count(self):
        self.check([b"./" + b"d" * 4093 + b"/"])

    def test_warning_that_tar_could_not_stat_fails(self):
        warning = "tar: ./odd: name/x: Warning: Cannot stat: File name too long"
        error = self.assertRaises(FreezerError, self.check, [b"./"], (warning,))
        self.assertIn("./odd: name/x below /src", str(error))

    def test_other_warnings_pass(self):
        self.check([b"./"], ("tar: ./gone: Warning: Cannot stat: No such file or directory",))

    def test_missing_index_is_no_name(self):
        tar.check_name_lengths("/src", [], self.index)
