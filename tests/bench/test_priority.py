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

    assert overtaken([EMERGENCY], standard, field="finished_at") == [1]
    assert overtaken([EMERGENCY], standard, field="started_at") == [1]


def test_a_set_claimed_while_the_emergency_waits_starts_first_but_finishes_after():
    standard = [_job(5.0, 10.02, 14.0), _job(6.0, 10.02, 14.0)]

    assert overtaken([EMERGENCY], standard, field="finished_at") == [0]
    assert overtaken([EMERGENCY], standard, field="started_at") == [2]


def test_jobs_not_waiting_at_the_arrival_are_never_counted():
    already_running = _job(5.0, 9.0, 10.08)
    created_after = _job(10.01, 10.02, 10.08)

    for field in ("finished_at", "started_at"):
        assert overtaken(
            [EMERGENCY], [already_running, created_after], field=field
        ) == [0]
