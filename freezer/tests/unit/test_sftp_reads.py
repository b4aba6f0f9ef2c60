"""Pipelined SFTP reads: replies shorter than asked are asked again, longer ones refused, order kept."""

import paramiko
import testtools
from paramiko.message import Message
from paramiko.sftp import CMD_DATA, CMD_READ

from freezer.storage import sftp_reads, sftp_requests

CONTENT = bytes(range(256)) * 64  # 16 KiB


class ServerReplies:
    """Stands in for ``sftp_requests.Batch``: answers READs from CONTENT, as ``answer`` says."""

    def __init__(self, answer):
        self.answer = answer  # (offset, size) -> the bytes replied
        self.asked: list[tuple[int, int]] = []
        self.in_flight = self.most_in_flight = 0

    def __call__(self, sftp):
        return self

    def send(self, kind, handle, offset, size):
        assert kind == CMD_READ
        self.asked.append((int(offset), size))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        return len(self.asked) - 1

    def reply(self, num):
        self.in_flight -= 1
        msg = Message()
        msg.add_string(self.answer(*self.asked[num]))
        msg.rewind()
        return CMD_DATA, msg


class Handle:
    handle = b"h"


class TestStreamRange(testtools.TestCase):
    def read(self, answer, offset=0, length=16384) -> tuple[bytes, ServerReplies]:
        server = ServerReplies(answer)
        self.patch(sftp_requests, "Batch", server)
        data = b"".join(sftp_requests.stream_range(None, Handle(), offset, length, 1024, in_flight=4))
        return data, server

    def test_reads_in_order_with_a_bounded_number_in_flight(self):
        data, server = self.read(lambda offset, size: CONTENT[offset:offset + size], 100, 10_000)
        self.assertEqual(CONTENT[100:10_100], data)
        self.assertEqual(4, server.most_in_flight)

    def test_short_replies_are_completed(self):
        data, server = self.read(lambda offset, size: CONTENT[offset:offset + min(size, 300)])
        self.assertEqual(CONTENT, data)
        self.assertIn((300, 724), server.asked)  # the rest of the first read, asked again

    def test_a_reply_longer_than_asked_is_refused(self):
        error = self.assertRaises(paramiko.SFTPError, self.read, lambda offset, size: CONTENT[offset:offset + 2 * size])
        self.assertIn("with 2048", str(error))

    def test_an_empty_reply_is_the_end_of_the_file(self):
        self.assertRaises(EOFError, self.read, lambda offset, size: b"" if offset >= 4096 else CONTENT[offset:][:size])

    def test_into_one_buffer(self):
        server = ServerReplies(lambda offset, size: CONTENT[offset:offset + min(size, 500)])
        self.patch(sftp_requests, "Batch", server)
        view = sftp_requests.read_range(None, Handle(), 1000, 9000, 1024, in_flight=8)
        self.assertEqual(CONTENT[1000:10_000], bytes(view))


class TestReadsInFlight(testtools.TestCase):
    def test_fewer_on_a_lan_than_over_a_long_link(self):
        self.assertEqual(sftp_reads.LAN_IN_FLIGHT, sftp_reads.in_flight_for(0.001))
        self.assertEqual(sftp_reads.PREFETCH_LIMIT, sftp_reads.in_flight_for(0.1))
        self.assertLess(sftp_reads.LAN_IN_FLIGHT, sftp_reads.PREFETCH_LIMIT)
