"""Throw-away servers on 127.0.0.1 (pyftpdlib FTP/FTPS, OpenSSH sshd, vsftpd).

Shipped code uses them (``tools/demo.sh`` through ``freezer.tools.demo``, the benchmarks) as well as
the tests, so they live here rather than in ``freezer.tests``. They need the ``demo`` extra
(fixtures, pyftpdlib, pyopenssl).
"""
