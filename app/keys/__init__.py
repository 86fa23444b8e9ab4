"""API keys: the service, the ``flask keys`` CLI and the admin endpoints."""
