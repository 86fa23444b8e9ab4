"""gunicorn settings, read from the service's own settings."""

# Imported under a private name: gunicorn reads every public name here as
# one of its settings, and "config" is one (it refused to start).
from config import load as _load_settings

_settings = _load_settings()

bind = f"{_settings['HOST']}:{_settings['PORT']}"
workers = int(_settings["WEB_WORKERS"])
# Threads let one worker overlap the short waits on Redis and the database.
threads = 4
worker_class = "gthread"
timeout = 30
accesslog = "-"
