"""Which client-library errors mean "nothing answers there" (permanent) rather than a dropped link."""

import socket

import testtools
from urllib3.exceptions import MaxRetryError, NewConnectionError

from freezer.errors import never_connected
from freezer.testing.servers import free_port


class TestNeverConnected(testtools.TestCase):
    def test_refused_through_requests(self):
        import requests

        error = self.assertRaises(requests.exceptions.ConnectionError, requests.get,
                                  f"http://127.0.0.1:{free_port()}/", timeout=5)
        self.assertTrue(never_connected(error))

    def test_refused_through_botocore(self):
        import boto3
        from botocore.config import Config
        from botocore.exceptions import EndpointConnectionError

        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{free_port()}", aws_access_key_id="a",
                              aws_secret_access_key="s", region_name="us-east-1",
                              config=Config(retries={"max_attempts": 1}))
        error = self.assertRaises(EndpointConnectionError, client.list_buckets)
        self.assertTrue(never_connected(error))

    def test_unknown_host(self):
        self.assertTrue(never_connected(socket.gaierror(-2, "Name or service not known")))

    def test_reset_while_connecting_is_not(self):
        try:
            try:
                raise ConnectionResetError(104, "Connection reset by peer")
            except ConnectionResetError as reset:
                raise NewConnectionError(None, "Failed to establish a new connection") from reset
        except NewConnectionError as wrapped:
            self.assertFalse(never_connected(MaxRetryError(None, "/", wrapped)))

    def test_timeout_and_plain_errors_are_not(self):
        self.assertFalse(never_connected(TimeoutError("timed out")))
        self.assertFalse(never_connected(ValueError("x")))
