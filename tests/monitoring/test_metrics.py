"""GET /metrics after real traffic: Prometheus text, for view:metrics only."""

from prometheus_client.parser import text_string_to_metric_families

from monitoring import metrics
from tests.monitoring.conftest import fail_logins


def _samples(text):
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            found[key] = sample.value
    return found


def test_metrics_reflect_real_traffic(app, client, make_key, watch):
    """Requests, submit latency, queue depth, jobs, webhooks and alerts all show."""
    headers = make_key.headers("operator")
    for n in range(3):
        response = client.post(
            "/v1/classifications",
            json={"text": f"Bridge closed on route {n} after the flood"},
            headers=headers,
        )
        assert response.status_code == 202
    client.post("/v1/emergency", json={"text": "Trapped, need rescue"}, headers=headers)
    client.post("/v1/classifications", json={"text": ""}, headers=headers)
    fail_logins(client, 11)
    watch.check()
    metrics.count_webhook_attempt(watch.redis, "delivered")
    metrics.count_webhook_attempt(watch.redis, "delivered")
    metrics.count_webhook_attempt(watch.redis, "failed")

    response = client.get("/metrics", headers=make_key.headers("viewer"))

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = _samples(response.get_data(as_text=True))
    requests = "aicrisisalert_requests_total"
    assert samples[(requests, (("endpoint", "jobs.submit"), ("status", "202")))] == 3
    assert samples[(requests, (("endpoint", "jobs.submit"), ("status", "422")))] == 1
    assert samples[(requests, (("endpoint", "jobs.list_"), ("status", "401")))] == 11
    latency = "aicrisisalert_submit_latency_seconds"
    assert samples[(f"{latency}_count", (("endpoint", "jobs.submit"),))] == 4
    assert samples[(f"{latency}_count", (("endpoint", "jobs.submit_emergency"),))] == 1
    assert samples[(f"{latency}_sum", (("endpoint", "jobs.submit"),))] > 0
    inf_bucket = (f"{latency}_bucket", (("endpoint", "jobs.submit"), ("le", "+Inf")))
    assert samples[inf_bucket] == 4
    assert samples[("aicrisisalert_queue_depth", (("queue", "standard"),))] == 3
    assert samples[("aicrisisalert_queue_depth", (("queue", "emergency"),))] == 1
    assert samples[("aicrisisalert_jobs", (("status", "queued"),))] == 4
    attempts = "aicrisisalert_webhook_attempts_total"
    assert samples[(attempts, (("outcome", "delivered"),))] == 2
    assert samples[(attempts, (("outcome", "failed"),))] == 1
    alerts = "aicrisisalert_alerts_total"
    assert samples[(alerts, (("type", "failed_auth_rate"),))] == 1


def test_metrics_need_view_metrics(client, make_key):
    """Without a key 401; a role without view:metrics 403; admin may read."""
    assert client.get("/metrics").status_code == 401
    refused = client.get("/metrics", headers=make_key.headers("operator"))
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "forbidden"
    assert client.get("/metrics", headers=make_key.headers("admin")).status_code == 200


def test_histogram_buckets_are_cumulative(watch):
    """Observations land in their bucket and every bucket above it."""
    for value in (0.004, 0.2, 0.2, 30.0):
        metrics.observe(
            watch.redis, "inference_latency_seconds", {"queue": "standard"}, value
        )

    samples = _samples(
        metrics.render(watch.redis, queues=(), jobs_by_status={}).decode()
    )

    name = "aicrisisalert_inference_latency_seconds_bucket"

    def bucket(le):
        return samples[(name, (("le", le), ("queue", "standard")))]

    assert [bucket("0.005"), bucket("0.1"), bucket("0.25"), bucket("10.0")] == [
        1,
        1,
        3,
        3,
    ]
    assert bucket("+Inf") == 4
