"""The engine on the shipped artifact over the packaged base weights."""

import json
import subprocess
import sys

import pytest

from classifier.data import read_tsv
from classifier.engine import Engine
from classifier.labels import LABELS
from tests.conftest import HUMAID_DIR
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def engine():
    return Engine(threads=1)


@pytest.fixture(scope="module")
def real_tweets():
    return read_tsv(HUMAID_DIR / "test.tsv", limit=200)


def test_engine_classifies_real_tweets_well(engine, real_tweets):
    """On 200 real test tweets the shipped model is right well over half the time."""
    results = engine.classify([text for _, text, _ in real_tweets])

    correct = sum(
        r["category"] == label
        for r, (_, _, label) in zip(results, real_tweets, strict=True)
    )
    assert correct / len(real_tweets) > 0.6
    for result in results:
        assert set(result["scores"]) == set(LABELS)
        assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-4)


def test_batched_results_equal_one_by_one_in_order(engine, real_tweets):
    """Batching and length-bucketing change neither the order nor the scores."""
    texts = [text for _, text, _ in real_tweets[:24]]

    batched = engine.classify(texts, batch_size=8)
    single = [engine.classify([text], batch_size=1)[0] for text in texts]

    assert [r["category"] for r in batched] == [r["category"] for r in single]
    for a, b in zip(batched, single, strict=True):
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-4)


ODD_INPUTS = [
    "Flood waters rising 🌊🌊 need help 🙏🏽 👨‍👩‍👧‍👦 trapped",
    "Ne\u200bed\u200d wa\u2060ter at the shel\ufeffter",
    "Ca\u0301sa destruida, necesitamos ayuda urgente en Puebla",
    "地震で家が倒壊しました。助けてください",
    "RT @someone: bridge out on I-45 https://t.co/abc123 #HoustonFlood",
    "z\u0351\u0352\u0353\u0354 a\u0300\u0301\u0302\u0303\u0304 combining marks",
]


@pytest.mark.parametrize("text", ODD_INPUTS)
def test_engine_takes_odd_inputs(engine, text):
    """Emoji, invisible and combining characters, other scripts, URLs and mentions."""
    (result,) = engine.classify([text])

    assert result["category"] in LABELS
    assert result["truncated"] is False


def test_long_text_is_truncated_and_marked(engine):
    """10,000 characters are cut at the model's length and marked truncated."""
    long_text = ("Buildings collapsed downtown and roads are blocked. " * 200)[:10_000]

    long_result, short_result = engine.classify(
        [long_text, "Roads are blocked downtown."]
    )

    assert long_result["truncated"] is True
    assert short_result["truncated"] is False
    assert long_result["category"] in LABELS


def test_evaluate_command_prints_report_as_last_line(tmp_path, real_tweets):
    """``python -m classifier.evaluate`` scores a TSV and ends with the JSON report."""
    sample = tmp_path / "sample.tsv"
    lines = ["tweet_id\ttweet_text\tclass_label"]
    lines += [f"{tid}\t{text}\t{label}" for tid, text, label in real_tweets[:40]]
    sample.write_text("\n".join(lines) + "\n", "utf-8")

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "classifier.evaluate",
            "--data",
            str(sample),
            "--threads",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )

    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["n"] == 40
    assert set(report) >= {
        "accuracy",
        "weighted_f1",
        "macro_f1",
        "per_class_f1",
        "ece",
        "parameters",
        "model_version",
    }
    assert set(report["per_class_f1"]) == set(LABELS)
    assert 0.0 <= report["weighted_f1"] <= 1.0
    assert 20_000_000 < report["parameters"] < 35_000_000


def test_train_command_writes_a_loadable_artifact(tmp_path):
    """``classifier.train`` on a small sample writes weights, config and card."""
    out_dir = tmp_path / "artifact"

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "classifier.train",
            "--limit",
            "150",
            "--out",
            str(out_dir),
            "--threads",
            "1",
            "--no-lexical",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )

    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["dev"]["n"] == 150
    assert {p.name for p in out_dir.iterdir()} == {
        "model.safetensors",
        "config.json",
        "MODEL_CARD.md",
    }
    trained = Engine(out_dir, threads=1)
    assert trained.version == summary["version"]
    assert trained.classify(["Roads flooded, need rescue"])[0]["category"] in LABELS


@pytest.mark.parametrize(
    ("flags", "precision"), [([], "float32"), (["--bf16"], "bfloat16 autocast")]
)
def test_finetune_trains_every_weight_and_writes_a_loadable_artifact(
    tmp_path, flags, precision
):
    """``--method finetune`` on a tiny sample changes the encoder and ships it all."""
    from safetensors.torch import load_file

    from classifier.model import load_base

    out_dir = tmp_path / "finetuned"
    args = ["--method", "finetune", "--limit", "64", "--epochs", "1"]
    args += ["--batch-size", "16", "--threads", "1", "--out", str(out_dir)]
    args += ["--no-lexical", *flags]

    out = subprocess.run(
        [sys.executable, "-m", "classifier.train", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )

    summary = json.loads(out.stdout.strip().splitlines()[-1])
    tensors = load_file(str(out_dir / "model.safetensors"))
    base, _ = load_base(len(LABELS))
    name = "encoder.encoder.layer.0.attention.self.query.weight"
    assert name in tensors and "head.weight" in tensors
    assert not tensors[name].float().allclose(base.state_dict()[name], atol=1e-4)
    trained = Engine(out_dir, threads=1)
    assert trained.version == summary["version"]
    training = trained.config["training"]
    assert training["method"].startswith("full fine-tune")
    assert training["precision"] == precision
    assert training["command"].endswith("--bf16 --no-lexical --limit 64") == bool(flags)
    assert trained.classify(["Roads flooded, need rescue"])[0]["category"] in LABELS


def test_free_memory_is_handed_back_after_a_pass():
    """The worker's heap trim runs on this glibc system (make soak shows its effect)."""
    from classifier.engine import release_free_memory

    assert release_free_memory() is True


def test_refit_trains_again_on_train_and_dev_with_what_dev_chose(tmp_path):
    """``--method refit`` keeps what dev chose and says where it came from."""
    from safetensors.torch import load_file

    from classifier.artifact import read_config

    out_dir = tmp_path / "refit"
    train = [sys.executable, "-m", "classifier.train", "--limit", "48"]
    train += ["--threads", "1", "--bf16", "--out", str(out_dir)]
    for stage in (["finetune", "--epochs", "2"], ["refine", "--epochs", "1"]):
        subprocess.run(
            [*train, "--method", *stage], cwd=ROOT, capture_output=True, check=True
        )
    chosen = read_config(out_dir)
    before = load_file(str(out_dir / "model.safetensors"))
    refit = [*train, "--method", "refit"]

    out = subprocess.run(refit, cwd=ROOT, capture_output=True, text=True, check=True)

    summary = json.loads(out.stdout.strip().splitlines()[-1])
    config = read_config(out_dir)
    training = config["training"]
    assert training["refit"] is True
    assert (training["train_rows"], training["dev_rows"]) == (96, 0)
    # Each stage stops where dev chose, without scoring dev again.
    assert training["best_checkpoint"] == chosen["training"]["best_checkpoint"]
    first = chosen["training"]["first_stage"]
    assert training["first_stage"]["best_checkpoint"] == first["best_checkpoint"]
    assert training["chosen_on_dev"]["scores"]["dev"] == chosen["scores"]["dev"]
    assert config["scores"] == {}
    assert config["temperature"] == chosen["temperature"]
    assert config.get("lexical", {}).get("weight") == chosen.get("lexical", {}).get(
        "weight"
    )
    after = load_file(str(out_dir / "model.safetensors"))
    name = "encoder.encoder.layer.5.output.dense.weight"
    assert not after[name].float().allclose(before[name].float(), atol=1e-4)
    card = (out_dir / "MODEL_CARD.md").read_text("utf-8")
    assert "train.tsv and dev.tsv together" in card
    assert "## Scores on dev.tsv" not in card
    trained = Engine(out_dir, threads=1)
    assert trained.version == summary["version"]
    assert trained.classify(["Roads flooded, need rescue"])[0]["category"] in LABELS

    again = subprocess.run(refit, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode != 0
    assert "already holds a refitted model" in again.stderr
    # Dev can no longer choose a blend for a network that has seen it.
    blend = [*train, "--method", "blend"]
    refused = subprocess.run(blend, cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode != 0
    assert "refitted on dev" in refused.stderr
