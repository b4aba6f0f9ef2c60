"""Storage drivers and the layout of backups on them."""
