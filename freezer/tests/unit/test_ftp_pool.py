"""The FTP pool's bookkeeping between threads: what is lent is never ended, what is ended never lent."""

import threading
import types

import testtools

from freezer.storage import ftp_parallel
from freezer.storage.ftp_parallel import Pool, Worker


def pool_of(count: int) -> Pool:
    """A pool holding ``count`` idle workers, each with a stand-in connection (no server is reached)."""
    pool = Pool(settings=types.SimpleNamespace(where="ftp://test"))
    for n in range(count):
        worker = Worker(settings=None)
        worker.ftp = f"connection {n}"
        pool.workers.append(worker)
    return pool


class TestLendWhileEnding(testtools.TestCase):
    def test_a_pool_being_ended_lends_nothing(self):
        pool, lent_meanwhile, ended = pool_of(3), [], []

        def end(worker: Worker) -> None:  # another thread asks for a connection while each one is ended
            lent_meanwhile.append(pool.lend())
            ended.append(worker.ftp)

        pool._end_all(end)
        self.assertEqual(([None] * 3, ["connection 0", "connection 1", "connection 2"], []),
                         (lent_meanwhile, ended, pool.workers))

    def test_a_lent_connection_is_not_ended_with_the_pool(self):
        pool, ended = pool_of(2), []
        lent = pool.lend()
        pool._end_all(lambda worker: ended.append(worker.ftp))
        self.assertEqual(("connection 0", ["connection 1"], 1), (lent, ended, pool.lent))


class TestLendAfterWarming(testtools.TestCase):
    def test_workers_logged_in_for_a_transfer_are_lent_only_once_it_took_them(self):
        pool = pool_of(1)
        pool._warming = threading.Thread(target=lambda: None)
        pool._warming.start()
        pool._warming.join()
        with pool.busy():
            pass  # a small download (an incremental backup's parent snapshot) before the data's upload
        self.assertIsNone(pool.lend())  # logged in, but for the upload that comes next
        self.assertEqual(1, len(pool.take(1)))
        self.assertEqual("connection 0", pool.lend())


class TestGrowthAfterARefusal(testtools.TestCase):
    def test_the_limit_is_what_the_server_took_even_if_the_pool_was_ended_meanwhile(self):
        pool = pool_of(2)

        def connect_all(new: list[Worker]) -> list:
            pool._end_all(lambda worker: None)  # another thread ends the pool while these log in
            for worker in new:
                worker.ftp = "new"
            return [None, ftp_parallel.StorageError("421 too many connections")]

        self.patch(ftp_parallel, "_connect_all", connect_all)
        pool._grow(4)
        self.assertEqual(3, pool.limit)  # the two it had and one of the two new
