"""gunicorn settings, read from the service's own settings.

Every public name here is read by gunicorn as a setting, so helpers are
imported under private names.

Sizing on two cores: a submit costs about 2.5 ms of CPU in a worker
(``bench.api`` at 200 a second, the workers' CPU time over the requests;
``python -m bench.submit_cpu`` gives the application's own share, about
1.8 ms), almost all of it Python holding the GIL, and waits well under a
millisecond on Redis and the database: three Redis round trips (the
watch's state, the limits and bans, the publish) and one SQLite commit.
One process per core (``WEB_WORKERS`` 2) is what lets the API use both
cores; more processes only add GIL-free context switches and memory. A
few threads per process (``WEB_THREADS`` 4) let a request run while
another waits on a socket or on SQLite's write lock, and keep a slow
client from holding the whole process; more threads just queue on the GIL.
The classify workers run below the API (the Procfile: worker-emergency at
nice 2, worker-standard under SCHED_IDLE), so under a classification flood
the kernel still gives gunicorn's processes the CPU when a request
arrives.
"""

from config import load as _load_settings
from monitoring import requestlog as _requestlog

_settings = _load_settings()

bind = f"{_settings['HOST']}:{_settings['PORT']}"
workers = int(_settings["WEB_WORKERS"])
threads = int(_settings["WEB_THREADS"])
worker_class = "gthread"
timeout = 30
accesslog = _settings["WEB_ACCESS_LOG"]


def worker_exit(_server, _worker):
    """Write the request logs and key usage the worker still holds."""
    _requestlog.flush()
