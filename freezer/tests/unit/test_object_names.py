"""Pure naming rules of the object-store drivers."""

import testtools

from freezer.common import settings
from freezer.errors import FreezerError
from freezer.storage import s3


class TestS3Names(testtools.TestCase):
    def test_container_is_bucket_and_prefix(self):
        self.assertEqual(("bucket", "a/b"), settings.split_container("/bucket/a/b/"))
        self.assertEqual(("bucket", ""), settings.split_container("bucket"))

    def test_bad_bucket_names_name_the_option(self):
        for bad in ("", "B!", "ab", "-bucket"):
            error = self.assertRaises(FreezerError, settings.split_container, f"{bad}/x")
            self.assertIn("--container", str(error))

    def test_folder_markers_deepest_first(self):
        self.assertEqual(["p/t/a/c/", "p/t/a/", "p/t/"],
                         s3.folder_markers(["p/t/a/1", "p/t/b", "p/t/a/c/d"], "p/t/"))
