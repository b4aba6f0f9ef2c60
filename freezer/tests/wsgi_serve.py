"""Serve a WSGI application on 127.0.0.1 with a threaded stdlib server (tests only).

``python -m freezer.tests.wsgi_serve PORT module:attribute``
"""

from __future__ import annotations

import importlib
import socketserver
import sys
from wsgiref import simple_server


class QuietHandler(simple_server.WSGIRequestHandler):
    """No access log line per request."""

    def log_message(self, *args) -> None:
        pass


class ThreadedServer(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True


def main() -> None:
    port, target = int(sys.argv[1]), sys.argv[2]
    module, attribute = target.split(":")
    del sys.argv[1:]  # keystone's application parses the command line as its own
    application = getattr(importlib.import_module(module), attribute)
    server = simple_server.make_server("127.0.0.1", port, application, ThreadedServer, QuietHandler)
    server.serve_forever()


if __name__ == "__main__":
    main()
