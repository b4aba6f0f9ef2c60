"""Horizon plug-in for freezer-web-ui: FTP, FTPS and SFTP storages in the action form.

Install with ``pip install '.[ui]'`` from freezer's checkout and copy ``enabled/_5059_freezer_ui_ftp.py`` next to
freezer-web-ui's enabled files; see doc/source/webui.rst.
"""
