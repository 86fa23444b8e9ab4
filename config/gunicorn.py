"""gunicorn settings, read from the service's own settings."""

# Imported under a private name: gunicorn reads every public name of this
# module as a setting, and "config" is one of its own.
import config as _config

_settings = _config.load()

bind = f"{_settings['HOST']}:{_settings['PORT']}"
workers = int(_settings["WEB_WORKERS"])
# Threads let one worker overlap the short waits on Redis and the database.
threads = 4
worker_class = "gthread"
timeout = 30
accesslog = "-"
