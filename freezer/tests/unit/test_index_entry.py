"""A level's index entry written beside its backup: the index read early, the entry written once given."""

import threading

import fixtures
import testtools

from freezer.storage import index, layout
from freezer.storage import metadata as level_metadata
from freezer.storage.chains import BackupRef
from freezer.storage.local import LocalStorage

EARLIER, NEW = BackupRef(100, 100, 0), BackupRef(100, 110, 1)


def record_of(ref: BackupRef) -> level_metadata.Metadata:
    return level_metadata.from_document({"level": ref.level, "time_stamp": ref.ts, "l0_time_stamp": ref.l0_ts,
                                         "data_size": 7, "compression": "zstd", "encryption": False})


class Recording(LocalStorage):
    """A local storage whose sibling is another handle on the same directory; reads and writes of the
    index are recorded with the thread that made them."""

    def __init__(self, root: str, events: list, read: threading.Event, with_sibling: bool = True):
        super().__init__(root)
        self.events, self.read, self.with_sibling = events, read, with_sibling

    def sibling(self):
        return Recording(self.root, self.events, self.read) if self.with_sibling else None

    def get_stream(self, path, offset=0):
        self.events.append(("read", threading.current_thread().name))
        self.read.set()
        return super().get_stream(path, offset)

    def put_bytes(self, path, data):
        self.events.append(("write", threading.current_thread().name))
        return super().put_bytes(path, data)


class TestIndexEntry(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.events: list = []
        self.tar_exited, self.read = threading.Event(), threading.Event()

    def backups(self, with_sibling: bool = True) -> layout.BackupSet:
        storage = Recording(self.root, self.events, self.read, with_sibling)
        backups = layout.BackupSet(storage, "host", "name")
        backups.add_to_index(EARLIER, record_of(EARLIER))
        self.events.clear()
        self.read.clear()
        return backups

    def stored(self, backups: layout.BackupSet) -> list[BackupRef]:
        return sorted(index.decode(backups.storage.get_bytes(backups._index_path())))

    def test_the_index_is_read_once_tar_exits_and_written_once_the_record_is_given(self):
        backups = self.backups()
        entry = backups.index_entry_beside(NEW, before=self.tar_exited.wait)
        self.assertEqual([], self.events)  # tar runs: nothing read yet
        self.tar_exited.set()
        self.assertTrue(self.read.wait(5))
        entry.add(record_of(NEW))
        entry.finish()
        self.assertEqual([("read", "beside"), ("write", "beside")], self.events)
        self.assertEqual([EARLIER, NEW], self.stored(backups))

    def test_abandoned_before_the_record_nothing_is_written(self):
        backups = self.backups()
        entry = backups.index_entry_beside(NEW, before=self.tar_exited.wait)
        self.tar_exited.set()
        self.assertTrue(self.read.wait(5))
        entry.abandon()
        self.assertEqual([("read", "beside")], self.events)
        self.assertEqual([EARLIER], self.stored(backups))

    def test_abandoned_while_tar_runs_the_index_is_not_even_read(self):
        backups = self.backups()
        entry = backups.index_entry_beside(NEW, before=self.tar_exited.wait)
        entry.beside.abandoned.set()  # as abandon() does before it waits
        self.tar_exited.set()
        entry.abandon()
        self.assertEqual([], self.events)

    def test_without_a_sibling_it_is_written_at_finish_in_the_callers_thread(self):
        backups = self.backups(with_sibling=False)
        entry = backups.index_entry_beside(NEW, before=self.tar_exited.wait)
        self.tar_exited.set()
        entry.add(record_of(NEW))
        self.assertEqual([], self.events)
        entry.finish()
        caller = threading.current_thread().name
        self.assertEqual([("read", caller), ("write", caller)], self.events)
        self.assertEqual([EARLIER, NEW], self.stored(backups))

    def test_an_index_unreadable_beside_is_written_again_at_finish(self):
        backups = self.backups()
        real = Recording.get_stream

        def failing_beside(storage, path, offset=0):
            if threading.current_thread().name == "beside":
                raise OSError("connection lost")
            return real(storage, path, offset)

        self.patch(Recording, "get_stream", failing_beside)
        entry = backups.index_entry_beside(NEW, before=self.tar_exited.wait)
        self.tar_exited.set()
        entry.add(record_of(NEW))
        entry.finish()
        self.assertEqual([EARLIER, NEW], self.stored(backups))

