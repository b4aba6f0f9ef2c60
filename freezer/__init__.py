"""freezer: a backup agent for local, SSH/SFTP, FTP/FTPS, S3 and Swift storage."""

__version__ = "0.1.0"
