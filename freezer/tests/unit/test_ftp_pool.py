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


class TestLendOnceWarm(testtools.TestCase):
    def test_workers_still_logging_in_are_not_lent_and_once_in_they_are(self):
        pool, release = pool_of(1), threading.Event()
        pool._warming = threading.Thread(target=release.wait)
        pool._warming.start()
        self.assertIsNone(pool.lend())
        release.set()
        pool._warming.join()
        self.assertEqual("connection 0", pool.lend())  # no transfer took them: the warming thread is over


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
