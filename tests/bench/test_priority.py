"""The ordering counts of bench.priority (pure functions over job rows)."""

from bench.priority import overtaken


def _job(created, started, finished):
    stamp = "2026-12-05T07:00:{:06.3f}+00:00".format
    return {
        "created_at": stamp(created),
        "started_at": stamp(started),
        "finished_at": stamp(finished),
    }


EMERGENCY = _job(10.0, 10.05, 10.10)


def test_a_waiting_standard_job_that_finishes_first_is_counted():
    standard = [_job(5.0, 10.02, 10.08)]

    ((started_first, finished_first),) = overtaken([EMERGENCY], standard)

    assert finished_first == 1
    assert started_first == 1


def test_a_set_claimed_while_the_emergency_waits_starts_first_but_finishes_after():
    standard = [_job(5.0, 10.02, 14.0), _job(6.0, 10.02, 14.0)]

    ((started_first, finished_first),) = overtaken([EMERGENCY], standard)

    assert finished_first == 0
    assert started_first == 2


def test_jobs_not_waiting_at_the_arrival_are_never_counted():
    already_running = _job(5.0, 9.0, 10.08)
    created_after = _job(10.01, 10.02, 10.08)

    assert overtaken([EMERGENCY], [already_running, created_after]) == [(0, 0)]
