"""Logging set-up with every secret masked, whatever the handler."""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable

MASK = "***"
LOG_FILE_HANDLER = "freezer-log-file"
SHORT_SECRET = 8


class SecretMask(logging.Filter):
    """Replace known secret values in every record with ``***``.

    A short secret is masked only where it stands alone, so a password ``p`` leaves ``--ftp-port`` readable.
    """

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.pattern = re.compile("|".join(_pattern(s) for s in self.secrets)) if self.secrets else None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self.mask(record.getMessage())
            record.args = None
        return True

    def mask(self, text: str) -> str:
        return self.pattern.sub(MASK, text) if self.pattern else text


def _pattern(secret: str) -> str:
    """Anywhere for a long secret; only between non-word characters for a short one."""
    escaped = re.escape(secret)
    return escaped if len(secret) >= SHORT_SECRET else rf"(?<!\w){escaped}(?!\w)"


def setup(log_file: str | None, debug: bool, quiet: bool, secrets: Iterable[str],
          prog: str = "freezer-agent") -> SecretMask:
    """Warnings to stderr as ``prog: LEVEL: ...`` (unless quiet), details to ``log_file``; return the mask."""
    mask = SecretMask(secrets)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    console = logging.StreamHandler()
    console.setLevel(logging.DEBUG if debug else (logging.ERROR if quiet else logging.WARNING))
    # On a terminal each message first clears the line, so it never lands in the middle of a progress line.
    clear = "\r\x1b[K" if _is_terminal(sys.stderr) else ""
    console.setFormatter(logging.Formatter(clear + prog + ": %(levelname)s: %(message)s"))
    handlers = [console]
    if log_file:
        to_file = logging.FileHandler(log_file, encoding="utf-8")
        to_file.set_name(LOG_FILE_HANDLER)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
        handlers.append(to_file)
    for handler in handlers:
        handler.addFilter(mask)
        root.addHandler(handler)
    for noisy in ("pyftpdlib", "botocore", "boto3"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)
    # Their failures reach the user as our one-line error; their own reports would repeat it
    # (paramiko's transport thread logs a dropped connection as an ERROR with a traceback).
    for repeats in ("paramiko", "urllib3", "swiftclient", "keystoneauth"):
        logging.getLogger(repeats).setLevel(logging.DEBUG if debug else logging.CRITICAL)
    return mask


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def to_log_file(message: str, level: int = logging.ERROR) -> None:
    """Write ``message`` to ``--log-file`` only (the console has it already), masked like every record."""
    record = logging.LogRecord("freezer", level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if handler.get_name() == LOG_FILE_HANDLER:
            handler.handle(record)


def quiet_background_errors() -> None:
    """Exceptions in threads and in ``__del__`` (paramiko's prefetch thread and files after a dropped
    connection) go to the debug log: the failure reaches the user once, as the one-line error."""
    threading.excepthook = _log_thread_exception
    sys.unraisablehook = _log_unraisable


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "a thread"
    _debug_quietly("exception in %s", name, exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def _log_unraisable(unraisable) -> None:
    what = unraisable.err_msg or "exception ignored"
    exc_info = (unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback)
    _debug_quietly("%s %r", what, unraisable.object, exc_info=exc_info)


def _debug_quietly(message: str, *args, exc_info) -> None:
    """Log at debug level; at interpreter exit logging may be gone, and then nothing is said."""
    try:
        logging.getLogger("freezer.background").debug(message, *args, exc_info=exc_info)
    except Exception:  # noqa: BLE001 - a hook must never raise
        pass
