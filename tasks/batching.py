"""Gathering waiting classification messages into one forward pass.

A ``classify.jobs`` task starts with the message Celery handed it. Before
it claims anything it takes more waiting messages of its worker's queues
straight from the broker, without blocking, until it holds about
``WORKER_BATCH_MAX_JOBS`` jobs:

- **Emergency first.** The worker's queues are drained in the order it
  consumes them (``-Q emergency,standard``: emergency, then standard), and
  emergency jobs run as a pass of their own before any standard job is
  claimed. A task that started from an emergency message never takes
  standard work at all.
- **Short flush.** A standard task that found fewer jobs than the batch
  size waits up to ``WORKER_BATCH_WAIT_MS`` for more, looking at emergency
  first on every poll; an emergency ends the wait. Emergency tasks never
  wait. Under load no wait is needed: messages pile up while a pass runs
  and the next task takes them all.
- **Backlog.** A worker that consumes no emergency queue (the Procfile's
  worker-standard) gathers a deep backlog in bigger sets, a quarter of
  what waits, up to ``WORKER_BATCH_BACKLOG_MAX_JOBS``: sorted by length,
  a bigger set pads less per pass. See :func:`backlog_target`.
- **Acks.** A message is taken with kombu's ``basic_get`` without an ack:
  it moves from the queue into the transport's unacked set (the same
  record Celery's own consumer keeps), so if this process dies the
  worker's consumer puts it back once ``VISIBILITY_TIMEOUT_SECONDS`` has
  passed. It is acked only after its jobs are committed as finished, and
  any message not acked when the task ends (a retry, an error) is put
  back on its queue at once. A message redelivered after its jobs
  finished does nothing, because ``storage.jobs.claim`` skips finished
  jobs: a job is never lost and never runs twice to completion.

A message is popped and recorded as unacknowledged by one Redis script
(``_TAKE_SCRIPT``), so a worker killed while gathering cannot drop one
between the two steps (kombu's own ``basic_get`` does them in two round
trips, and a test that kills a worker mid-gather lost a job that way).
Messages taken this way run outside Celery's bookkeeping: Flower shows
only the task that gathered them (the log line gives the batch), and
their lines carry that task's request id.

TODO: a job gathered into another request's task is logged under that
request's id, not its own. Acceptable while a batch's line names its
size and queue; carry the ids per job if tracing one job through a
batch is needed.
"""

import json
import time
from dataclasses import dataclass
from dataclasses import field

from celery.utils.log import get_task_logger
from kombu.serialization import prepare_accept_content
from kombu.transport import virtual

logger = get_task_logger(__name__)

CLASSIFY_TASK = "classify.jobs"
EMERGENCY = "emergency"
# Seconds between looks at the broker while a standard batch waits.
_POLL_SECONDS = 0.004

_state = {"connection": None, "channel": None, "take": None}
# Pop the oldest message of one queue list and record it in the transport's
# unacked index and hash, exactly as kombu's Redis QoS.append does, in one
# atomic step. The hash value is the JSON array [payload, exchange,
# routing key], built around the payload's own text so nothing is re-encoded.
_TAKE_SCRIPT = """
local raw = redis.call('RPOP', KEYS[1])
if not raw then return false end
local props = cjson.decode(raw)['properties']
local info = props['delivery_info']
redis.call('ZADD', KEYS[2], ARGV[1], props['delivery_tag'])
redis.call('HSET', KEYS[3], props['delivery_tag'],
  '[' .. raw .. ',' .. cjson.encode(info['exchange']) .. ','
  .. cjson.encode(info['routing_key']) .. ']')
return raw
"""


@dataclass
class Group:
    """Jobs of one queue that run as one pass, with the messages they came in."""

    queue: str
    job_ids: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    # Whether the task's own message is among them (Celery acks that one).
    original: bool = False


@dataclass
class Gathered:
    """What a task holds: groups in the order they run, and the broker channel."""

    groups: list
    messages_taken: int = 0

    def ack(self, group):
        """Acknowledge a group's messages: their jobs are committed as finished."""
        for message in group.messages:
            try:
                message.ack()
            except Exception as error:  # noqa: BLE001  (redelivered, then skipped)
                # Left in the unacked set: it comes back after the
                # visibility timeout and claim() skips its finished jobs.
                logger.warning("batching: ack failed error=%s", type(error).__name__)
        group.messages = []

    def give_back(self):
        """Put every message not acked back on its queue (best effort).

        A message that cannot be put back stays in the transport's unacked
        set and returns after the visibility timeout.
        """
        for group in self.groups:
            for message in group.messages:
                try:
                    message.reject(requeue=True)
                except Exception as error:  # noqa: BLE001  (restored later)
                    logger.warning(
                        "batching: could not put a message back error=%s",
                        type(error).__name__,
                    )
            group.messages = []


def _channel(app):
    """Return this process's channel for taking messages, opening it once."""
    if _state["channel"] is None:
        connection = app.connection_for_read()
        connection.ensure_connection(max_retries=1)
        _state["connection"] = connection
        _state["channel"] = connection.channel()
    return _state["channel"]


def _atomic_get(app, channel, queue_name):
    """Take one message of ``queue_name`` as unacknowledged; None when empty."""
    if _state["take"] is None:
        _state["take"] = channel.client.register_script(_TAKE_SCRIPT)
    for priority in channel.priority_steps:
        raw = _state["take"](
            keys=[
                channel._q_for_pri(queue_name, priority),
                channel.unacked_index_key,
                channel.unacked_key,
            ],
            args=[time.time()],
        )
        if raw:
            message = channel.Message(json.loads(raw), channel=channel)
            # Only the in-process record: the Redis side is written already.
            virtual.QoS.append(channel.qos, message, message.delivery_tag)
            message.accept = prepare_accept_content(app.conf.accept_content)
            return message
    return None


def consumed_queues(app, current):
    """Return the queues this worker consumes, in its order (``-Q``)."""
    names = list(app.amqp.queues.consume_from or ())
    return names or [current]


def _take(app, queue_name, room):
    """Take waiting messages from ``queue_name`` holding up to ``room`` jobs.

    Returns ``[(message, job ids)]``. A message that is not a classification
    (which the routes never send here) is put back and ends the take.
    """
    channel = _channel(app)
    taken = []
    while room > 0:
        message = _atomic_get(app, channel, queue_name)
        if message is None:
            break
        if message.headers.get("task") != CLASSIFY_TASK:
            message.reject(requeue=True)
            break
        args = message.decode()[0]
        job_ids = list(args[0]) if args else []
        taken.append((message, job_ids))
        room -= len(job_ids)
    return taken


def waiting_messages(app, queue_name):
    """Return how many messages wait in ``queue_name`` (every priority level)."""
    channel = _channel(app)
    with channel.client.pipeline(transaction=False) as pipe:
        for priority in channel.priority_steps:
            pipe.llen(channel._q_for_pri(queue_name, priority))
        return sum(pipe.execute())


def backlog_target(*, held, messages, waiting, max_jobs, backlog_max_jobs, share):
    """Return how many jobs a standard-only task should hold, given a backlog.

    ``held`` jobs came in ``messages`` messages, and ``waiting`` more
    messages wait behind them; the waiting jobs are estimated at the same
    jobs per message. The task takes a ``share``-th of the whole backlog,
    never fewer than ``max_jobs`` and never more than ``backlog_max_jobs``:
    big sorted gathers while the backlog is deep (less padding per pass),
    shrinking as it drains, so the last gathers are small and no process
    is left with a long tail while the others idle.
    """
    if messages <= 0 or backlog_max_jobs <= max_jobs:
        return max_jobs
    backlog = held + waiting * held / messages
    return max(max_jobs, min(backlog_max_jobs, int(backlog / share)))


def gather(app, *, queue, job_ids, max_jobs, wait_ms, backlog_max_jobs, backlog_share):
    """Return the jobs a task runs: its own and those waiting behind them.

    Args:
        app: the Celery app.
        queue: the queue the task's own message came from.
        job_ids: the task's own job ids.
        max_jobs: stop taking messages once this many jobs are held.
        wait_ms: how long a standard batch waits to fill (emergency: never).
        backlog_max_jobs: on a worker that does not consume ``emergency``,
            a deep backlog is gathered in bigger sets, up to this many jobs
            (see :func:`backlog_target`); 0 turns it off. A worker that
            serves emergencies never gathers past ``max_jobs``, so an
            emergency never waits behind a long standard pass.
        backlog_share: the fraction (1/share) of the backlog one task takes.
    """
    own = Group(queue, list(job_ids), original=True)
    emergency = own if queue == EMERGENCY else Group(EMERGENCY)
    groups = [emergency] if own is emergency else [emergency, own]
    gathered = Gathered(groups)
    queues = consumed_queues(app, queue)
    if max_jobs <= len(job_ids):
        return gathered

    def held():
        return sum(len(group.job_ids) for group in groups)

    def take_into(group, name, limit=max_jobs):
        # Emergency jobs have a budget of their own, so the last look at
        # emergency (below) finds room even when standard filled up.
        room = limit - (len(group.job_ids) if group is emergency else held())
        found = _take(app, name, room)
        for message, ids in found:
            group.messages.append(message)
            group.job_ids.extend(ids)
        gathered.messages_taken += len(found)
        return bool(found)

    try:
        if EMERGENCY in queues:
            take_into(emergency, EMERGENCY)
        if own is emergency:
            return gathered
        take_into(own, queue)
        deadline = time.monotonic() + wait_ms / 1000
        while held() < max_jobs and not emergency.job_ids:
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL_SECONDS)
            if EMERGENCY in queues:
                take_into(emergency, EMERGENCY)
            take_into(own, queue)
        if backlog_max_jobs > max_jobs and EMERGENCY not in queues and own.messages:
            target = backlog_target(
                held=held(),
                messages=len(own.messages) + 1,
                waiting=waiting_messages(app, queue),
                max_jobs=max_jobs,
                backlog_max_jobs=backlog_max_jobs,
                share=backlog_share,
            )
            if target > held():
                take_into(own, queue, target)
        # A last look just before the standard jobs are claimed: an
        # emergency sent while they were being taken runs ahead of them.
        # One sent after this look waits for this one pass, as a message
        # fetched in the same instant always could.
        if EMERGENCY in queues:
            take_into(emergency, EMERGENCY)
    except Exception as error:  # noqa: BLE001  (run what is already held)
        # The broker failed mid-way: run what is held; the rest waits in
        # the queue for the next task (the client reconnects by itself).
        logger.warning("batching: gathering stopped error=%s", type(error).__name__)
    return gathered
