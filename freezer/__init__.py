"""freezer: a backup agent for local, SSH/SFTP, FTP/FTPS, S3 and Swift storage."""

from freezer.common import deferred_imports

deferred_imports.defer()  # before anything imports oslo.config: start-up time (see the module)

__version__ = "0.1.0"
