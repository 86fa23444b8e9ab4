"""gunicorn settings, read from the service's own settings."""

import config

_settings = config.load()

bind = f"{_settings['HOST']}:{_settings['PORT']}"
workers = int(_settings["WEB_WORKERS"])
# Threads let one worker overlap the short waits on Redis and the database.
threads = 4
worker_class = "gthread"
timeout = 30
accesslog = "-"
