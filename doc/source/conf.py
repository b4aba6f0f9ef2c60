"""Sphinx configuration for the freezer user guide."""

project = "freezer"
copyright = "2026, freezer developers"
extensions = []
master_doc = "index"
exclude_patterns = []
html_theme = "alabaster"
