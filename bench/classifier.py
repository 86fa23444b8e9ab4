"""Classifier throughput: a plain pipeline, our engine, and our workers.

Usage (from the repository root; a run takes two to four minutes)::

    .venv/bin/python -m bench.classifier [--limit 1000]

On the same real tweets from ``../shared/data/humaid/test.tsv`` it times:

1. **Baseline**: transformers' ``pipeline("feature-extraction")`` over
   the shipped network's own fine-tuned encoder and tokenizer, one text at
   a time, mean-pooled, put through its head and, when the artifact has
   one, with the lexical model's logits added at their blend weight. It
   is the same model our engine runs, so it differs only in how it is
   served (the text gets the same normalisation); its predictions are
   checked against the engine's. It runs with one torch thread and with
   every core, and the faster of the two is the baseline, so that no
   ratio leans on a bad thread setting.
2. **Engine**: ``classifier.engine.Engine.classify`` at batch 1, 8, 32 and
   128, with one torch thread (what each worker process gets).
3. **Workers**: its own ``redis-server`` on a free port, a SQLite database
   in a temporary folder, and the two classify workers started with the
   Procfile's own command lines; the texts go in through
   ``POST /v1/classifications/batch`` (the API in this process), and
   again as one single submit each (``POST /v1/classifications``: this
   figure is bounded by this one process submitting through the whole
   request path), and the clock stops when the last job is finished in
   the database.

Ratios are to the baseline; the last line is one JSON object. Timings
move with the machine's load: the load average is printed with them.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
TEST_TSV = ROOT.parent / "shared" / "data" / "humaid" / "test.tsv"
ENGINE_BATCHES = (1, 8, 32, 128)
CLASSIFY_WORKERS = ("worker-emergency", "worker-standard")
_WAIT_SECONDS = 600


def _load():
    return round(os.getloadavg()[0], 2)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rate(count, seconds):
    return round(count / seconds, 1)


def baseline(texts, engine, threads):
    """Time the plain pipeline one text at a time; return (texts/s, labels)."""
    import torch
    from transformers import pipeline

    from classifier.text import normalise

    torch.set_num_threads(threads)
    extractor = pipeline(
        "feature-extraction",
        model=engine.model.encoder,
        tokenizer=engine.tokenizer,
        device="cpu",
    )
    head = engine.model.head
    normalize = engine.model.normalize
    lexical = engine.lexical if engine.lexical_weight else None
    labels = []
    extractor(texts[0])
    started = time.perf_counter()
    with torch.inference_mode():
        for text in texts:
            tokens = torch.tensor(
                extractor(
                    normalise(text),
                    tokenize_kwargs={
                        "truncation": True,
                        "max_length": engine.max_length,
                    },
                )[0]
            )
            pooled = tokens.mean(dim=0)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            logits = head(pooled)
            if lexical is not None:
                extra = lexical.logits([text])[0]
                logits = logits + engine.lexical_weight * torch.from_numpy(extra)
            labels.append(engine.labels[int(torch.argmax(logits))])
    return _rate(len(texts), time.perf_counter() - started), labels


def engine_rates(texts, engine):
    """Time the engine at each batch size; return ({batch: texts/s}, labels)."""
    engine.classify(texts[:32])
    rates = {}
    labels = None
    for batch in ENGINE_BATCHES:
        started = time.perf_counter()
        results = engine.classify(texts, batch_size=batch)
        rates[batch] = _rate(len(texts), time.perf_counter() - started)
        labels = labels or [result["category"] for result in results]
        print(f"engine batch={batch:<4} {rates[batch]:>7} texts/s", flush=True)
    return rates, labels


def _procfile_commands():
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and not line.startswith("#"):
            commands[name.strip()] = command.strip()
    return commands


class Service:
    """Redis, a database and the Procfile's classify workers, all ours."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.port = _free_port()
        self.processes = []
        redis_url = f"redis://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "AICRISISALERT_DATABASE_URL": f"sqlite:///{self.folder / 'bench.db'}",
            "AICRISISALERT_BROKER_URL": f"{redis_url}/0",
            "AICRISISALERT_RESULT_BACKEND_URL": f"{redis_url}/1",
            "AICRISISALERT_RATELIMIT_STORAGE_URL": f"{redis_url}/2",
            "PYTHONUNBUFFERED": "1",
        }

    def _spawn(self, command, log_name, **kwargs):
        log = open(self.folder / log_name, "ab")  # noqa: SIM115  (closed by the child)
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )
        self.processes.append(process)
        return process

    def start(self):
        """Start Redis and the workers; return once every worker is ready."""
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("redis-server is not installed (scripts/start-redis installs it)")
        self._spawn(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
             str(self.folder), "--save", "", "--appendonly", "no"],
            "redis.log",
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        _wait(lambda: _pings(client), "redis")
        os.environ.update(
            {k: v for k, v in self.env.items() if k.startswith("AICRISISALERT_")}
        )
        commands = _procfile_commands()
        for name in CLASSIFY_WORKERS:
            self._spawn(["bash", "-c", commands[name]], f"{name}.log")
        workers = self.processes[-len(CLASSIFY_WORKERS) :]
        for name, process in zip(CLASSIFY_WORKERS, workers, strict=True):
            log = self.folder / f"{name}.log"

            def ready(log=log, process=process, name=name):
                if process.poll() is not None:
                    self.stop()
                    sys.exit(f"{name} died:\n{log.read_text(errors='replace')}")
                return b"ready." in log.read_bytes()

            _wait(ready, name)
        return self

    def stop(self):
        """Stop everything this service started (by process group, ours only)."""
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _pings(client):
    import redis

    try:
        return client.ping()
    except redis.RedisError:
        return False


def _wait(predicate, what, timeout=_WAIT_SECONDS, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    sys.exit(f"timed out waiting for {what}")


def _finished(session, ids):
    from sqlalchemy import func
    from sqlalchemy import select

    from storage.models import Job

    session.expire_all()
    return session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.id.in_(ids), Job.status.in_(("succeeded", "failed")))
    )


def workers_rates(texts):
    """Time the Procfile's workers on a real broker; return a dict of figures."""
    from sqlalchemy import func
    from sqlalchemy import select

    from app import create_app
    from app.keys import service as key_service
    from storage import db
    from storage.models import Job
    from storage.monitoring import InferenceBatch

    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-classifier-") as folder:
        service = Service(folder).start()
        try:
            app = create_app()
            db.create_all()
            with app.app_context():
                _row, key = key_service.create(
                    db.session,
                    name="bench",
                    role="operator",
                    pepper=app.config["KEY_PEPPER"],
                )
            client = app.test_client()
            headers = {"Authorization": f"Bearer {key}"}
            limit = app.config["BATCH_MAX_ITEMS"]
            with app.app_context():
                warm = [
                    client.post(path, json={"text": texts[0]}, headers=headers)
                    for path in ("/v1/emergency", "/v1/classifications")
                ]
                warm_ids = [response.get_json()["id"] for response in warm]
                _wait(lambda: _finished(db.session, warm_ids) == 2, "warm-up")

                def batch_submit():
                    ids = []
                    for start in range(0, len(texts), limit):
                        items = [{"text": t} for t in texts[start : start + limit]]
                        response = client.post(
                            "/v1/classifications/batch",
                            json={"items": items},
                            headers=headers,
                        )
                        ids += [item["id"] for item in response.get_json()["items"]]
                    return ids

                def single_submits():
                    return [
                        client.post(
                            "/v1/classifications", json={"text": t}, headers=headers
                        ).get_json()["id"]
                        for t in texts
                    ]

                modes = (("batch", batch_submit), ("single", single_submits))
                for mode, submit in modes:
                    db.session.query(InferenceBatch).delete()
                    db.session.commit()
                    load = _load()
                    started = time.perf_counter()
                    ids = submit()
                    submitted = time.perf_counter() - started
                    # Polled 5 times a second: each look is a query made on
                    # the cores the workers use.
                    _wait(
                        lambda ids=ids: _finished(db.session, ids) == len(ids),
                        mode,
                        interval=0.2,
                    )
                    seconds = time.perf_counter() - started
                    sizes = [
                        row.batch_size
                        for row in db.session.scalars(select(InferenceBatch))
                    ]
                    failed = db.session.scalar(
                        select(func.count())
                        .select_from(Job)
                        .where(Job.id.in_(ids), Job.status == "failed")
                    )
                    figures[mode] = {
                        "texts_per_second": _rate(len(ids), seconds),
                        "submit_seconds": round(submitted, 2),
                        "mean_batch": round(sum(sizes) / max(1, len(sizes)), 1),
                        "passes": len(sizes),
                        "failed": failed,
                        "load": load,
                    }
                    print(
                        f"workers ({mode} submit) "
                        f"{figures[mode]['texts_per_second']:>7} texts/s "
                        f"(mean batch {figures[mode]['mean_batch']}, "
                        f"failed {failed}, load {load})",
                        flush=True,
                    )
        finally:
            service.stop()
    return figures


def main(argv=None):
    """Run every part on the same texts and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000, help="tweets to use")
    parser.add_argument("--data", default=str(TEST_TSV))
    args = parser.parse_args(argv)
    # A SIGTERM ends the run through the finally blocks, which stop the
    # Redis and workers it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from classifier.data import read_tsv
    from classifier.engine import Engine

    texts = [text for _, text, _ in read_tsv(args.data, limit=args.limit)]
    cores = os.cpu_count() or 1
    print(f"texts={len(texts)} cores={cores} load={_load()}", flush=True)

    engine = Engine(threads=1)
    rates, engine_labels = engine_rates(texts, engine)
    base = {}
    for threads in sorted({1, cores}):
        base[threads], base_labels = baseline(texts, engine, threads)
        print(f"baseline threads={threads} {base[threads]:>7} texts/s", flush=True)
    agreement = sum(
        a == b for a, b in zip(base_labels, engine_labels, strict=True)
    ) / len(texts)
    best = max(base.values())
    print(f"baseline = {best} texts/s; agrees with the engine on {agreement:.1%}")

    import torch

    torch.set_num_threads(1)
    workers = workers_rates(texts)

    print("ratios to the baseline:")
    for batch, rate in rates.items():
        print(f"  engine batch={batch:<4} {rate / best:5.2f}x")
    for mode, figures in workers.items():
        print(f"  workers {mode:<6} {figures['texts_per_second'] / best:5.2f}x")
    summary = {
        "texts": len(texts),
        "cores": cores,
        "baseline_per_second": best,
        "baseline_by_threads": base,
        "baseline_agreement": round(agreement, 4),
        "engine_per_second": rates,
        "workers": workers,
        "workers_over_baseline": round(workers["batch"]["texts_per_second"] / best, 2),
        "single_submits_over_baseline": round(
            workers["single"]["texts_per_second"] / best, 2
        ),
        "load_end": _load(),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
