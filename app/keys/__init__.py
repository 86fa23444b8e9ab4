"""API keys: creation and listing from the command line."""
