"""Adds the FTP/FTPS/SFTP storages to freezer-web-ui's action form (after its _505x files)."""

FEATURE = "freezer_ui_ftp"
ADD_INSTALLED_APPS = ["freezer_ui_ftp"]
AUTO_DISCOVER_STATIC_FILES = True
UPDATE_HORIZON_CONFIG = {"customization_module": "freezer_ui_ftp.overrides"}
