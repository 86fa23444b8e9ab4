"""The word n-gram model blended with the network (classifier/lexical.py)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from classifier import lexical
from classifier.artifact import DEFAULT_ARTIFACT_DIR
from classifier.artifact import artifact_version
from classifier.data import read_tsv
from classifier.engine import Engine
from classifier.labels import LABEL_TO_INDEX
from classifier.labels import LABELS
from tests.conftest import HUMAID_DIR
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def sample():
    train = read_tsv(HUMAID_DIR / "train.tsv", limit=2000)
    dev = read_tsv(HUMAID_DIR / "dev.tsv", limit=400)
    return (
        [r[1] for r in train],
        np.array([LABEL_TO_INDEX[r[2]] for r in train]),
        [r[1] for r in dev],
        np.array([LABEL_TO_INDEX[r[2]] for r in dev]),
    )


@pytest.fixture(scope="module")
def fitted(sample):
    return lexical.fit(*sample, LABELS)


def test_terms_are_words_and_word_pairs_of_the_normalised_text():
    """Hashtags count as their word, mentions and URLs as placeholders."""
    assert lexical.terms("#Flood: HELP @bob_1 https://t.co/x") == [
        "flood",
        "help",
        "user",
        "http",
        "flood help",
        "help user",
        "user http",
    ]
    assert lexical.terms("🙏 ! a") == []


def test_features_equal_sklearn_tfidf_over_the_same_vocabulary(sample, fitted):
    """The serving vectoriser gives the vectors the regression was fitted on."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    model, _dev_logits, details = fitted
    reference = TfidfVectorizer(
        analyzer=lexical.terms,
        sublinear_tf=True,
        min_df=2,
        max_features=50000,
        dtype=np.float32,
    )
    reference.fit(sample[0])
    assert len(reference.vocabulary_) == details["features"] == len(model.vocabulary)
    assert all(model.vocabulary[i] == t for t, i in reference.vocabulary_.items())
    dense = reference.transform(sample[2]).toarray()
    for row, text in enumerate(sample[2]):
        indices, values = model.features(text)
        ours = np.zeros(len(model.vocabulary), np.float32)
        ours[indices] = values
        assert np.allclose(ours, dense[row], atol=1e-6), text


def test_logits_equal_the_fitted_ones_and_survive_a_save(sample, fitted, tmp_path):
    """Serving logits match training's, before and after the fp16 round trip."""
    model, dev_logits, _details = fitted
    assert np.allclose(model.logits(sample[2]), dev_logits, atol=1e-4)
    model.save(tmp_path)
    loaded = lexical.load(tmp_path)
    assert loaded.vocabulary == model.vocabulary
    assert np.allclose(loaded.logits(sample[2]), dev_logits, atol=2e-2)
    assert (loaded.logits(sample[2]).argmax(1) == dev_logits.argmax(1)).mean() > 0.99


def test_lexical_model_alone_learns_the_task(sample, fitted):
    """On 2,000 training tweets it is far above chance on dev."""
    _model, dev_logits, _details = fitted
    accuracy = (dev_logits.argmax(axis=1) == sample[3]).mean()
    assert accuracy > 0.5


def test_blend_weight_is_chosen_on_dev():
    """Weight 0 when the lexical logits only hurt, more when they help."""
    gold = np.array([0, 1, 2, 3] * 5)
    network = np.eye(len(LABELS), dtype=np.float32)[gold]
    wrong = np.eye(len(LABELS), dtype=np.float32)[(gold + 1) % 4]
    assert lexical.choose_blend(network, 5 * wrong, gold, LABELS) == 0.0
    weak = np.zeros_like(network)
    weak[:, 0] = 0.1
    network_wrong_on_zero = network.copy()
    network_wrong_on_zero[gold == 0] = np.eye(len(LABELS))[1] * 0.05
    assert lexical.choose_blend(network_wrong_on_zero, weak, gold, LABELS) > 0


def test_fit_over_a_network_chooses_its_settings_by_the_blend(sample):
    """Settings and weight come from the blend: none over a perfect network."""
    gold = sample[3]
    silent = np.zeros((len(gold), len(LABELS)), np.float32)
    _model, _logits, details = lexical.fit(*sample, LABELS, network_dev_logits=silent)
    assert details["class_weight"] in ("balanced", None)
    assert details["c"] in lexical._C_GRID
    assert details["weight"] > 0

    perfect = 100 * np.eye(len(LABELS), dtype=np.float32)[gold]
    _model, _logits, details = lexical.fit(*sample, LABELS, network_dev_logits=perfect)
    assert details["weight"] == 0.0


def test_blend_command_adds_the_lexical_model_to_an_artifact(tmp_path):
    """``--method blend`` keeps the network and serves network + w x lexical."""
    out_dir = tmp_path / "artifact"
    # A network of its own, with no lexical model: the shipped one was
    # refitted on dev, so dev cannot choose its blend (blend refuses it).
    train = [sys.executable, "-m", "classifier.train", "--threads", "1"]
    train += ["--out", str(out_dir)]
    subprocess.run(
        [*train, "--method", "finetune", "--epochs", "1", "--limit", "64"]
        + ["--no-lexical"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    assert "lexical" not in json.loads((out_dir / "config.json").read_text("utf-8"))
    network_bytes = (out_dir / "model.safetensors").read_bytes()

    out = subprocess.run(
        [*train, "--method", "blend", "--limit", "3000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )

    summary = json.loads(out.stdout.strip().splitlines()[-1])
    config = json.loads((out_dir / "config.json").read_text("utf-8"))
    assert (out_dir / "model.safetensors").read_bytes() == network_bytes
    assert config["lexical"]["weight"] > 0
    assert (out_dir / "lexical.safetensors").exists()
    assert summary["version"] == artifact_version(out_dir)
    assert "Lexical model" in (out_dir / "MODEL_CARD.md").read_text("utf-8")

    blended = Engine(out_dir, threads=1)
    texts = ["Roads flooded, need rescue", "Praying for everyone in Houston #harvey"]
    with_lexical, _ = blended.logits(texts)
    lexical_logits = blended.lexical.logits(texts)
    blended.lexical = None
    network_only, _ = blended.logits(texts)
    expected = network_only.numpy() + config["lexical"]["weight"] * lexical_logits
    assert np.allclose(with_lexical.numpy(), expected, atol=1e-5)


def test_version_covers_the_lexical_files(tmp_path, fitted):
    """Changing the lexical weights changes the artifact's version."""
    out_dir = tmp_path / "artifact"
    shutil.copytree(DEFAULT_ARTIFACT_DIR, out_dir)
    model, _dev_logits, details = fitted
    model.save(out_dir)
    config = json.loads((out_dir / "config.json").read_text("utf-8"))
    config["lexical"] = {**details, "weight": 1.0}
    (out_dir / "config.json").write_text(json.dumps(config), "utf-8")
    before = artifact_version(out_dir)

    model.bias[0] += 1.0
    model.save(out_dir)

    assert artifact_version(out_dir) != before


def test_fit_fixed_gives_the_model_fit_chose_for_those_settings(sample):
    """The refit's lexical model is the grid's one, given the same data and settings."""
    train_texts, train_y, dev_texts, _dev_y = sample
    # Fitted here: other tests change the shared fixture's weights.
    chosen, _dev_logits, details = lexical.fit(*sample, LABELS)
    model, settings = lexical.fit_fixed(
        train_texts,
        train_y,
        LABELS,
        c=details["c"],
        class_weight=details["class_weight"],
    )
    assert settings == {
        "c": details["c"],
        "class_weight": details["class_weight"],
        "features": details["features"],
    }
    assert model.vocabulary == chosen.vocabulary
    np.testing.assert_allclose(
        model.logits(dev_texts), chosen.logits(dev_texts), rtol=1e-5, atol=1e-5
    )
