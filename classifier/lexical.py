"""A word n-gram model whose logits are blended with the network's.

The network reads a tweet as sub-word pieces; this model reads it as
whole words and word pairs (TF-IDF over 1- and 2-grams with a multinomial
logistic regression). The two make different mistakes, so a weighted sum
of their logits, with the weight chosen on dev, scores better than
either. Serving needs numpy only: the vocabulary, idf and weights are
stored in the artifact beside the network, and the vectoriser below is
the same function at training and serving time.

Files in the artifact folder: ``lexical.safetensors`` (``weight`` as
features x labels, ``bias``, ``idf``) and ``lexical.json`` (the
vocabulary, one term per feature index).
"""

import json
import logging
import math
import re
from pathlib import Path

import numpy as np

from classifier.text import normalise

logger = logging.getLogger(__name__)

TENSORS_FILE = "lexical.safetensors"
VOCABULARY_FILE = "lexical.json"
# Words of two or more letters or digits; "#" and "@" fall away, so a
# hashtag counts as the word it spells.
_WORD_RE = re.compile(r"\w\w+")
_MAX_FEATURES = 50000
_MIN_DF = 2
# Inverse regularisation strengths and class weightings tried on dev, and
# blend weights. "balanced" weighs each class by its inverse frequency;
# None leaves the training distribution as it is. Which is better depends
# on the network it is blended with (measured on dev over the fine-tuned
# network: unweighted blended to 0.7767 / 0.7626 weighted / macro F1,
# balanced to 0.772 / 0.7579), so the choice is made by the blend.
_C_GRID = (2.0, 4.0, 8.0)
_CLASS_WEIGHTS = ("balanced", None)
_BLEND_GRID = tuple(round(0.1 * step, 1) for step in range(0, 31))


def terms(text):
    """Return the words and adjacent word pairs of ``text``, lower-cased."""
    words = _WORD_RE.findall(normalise(text).lower())
    return words + [
        f"{first} {second}" for first, second in zip(words, words[1:], strict=False)
    ]


class LexicalModel:
    """TF-IDF features (sublinear tf, l2 norm) and a linear layer."""

    def __init__(self, vocabulary, idf, weight, bias):
        self.vocabulary = list(vocabulary)
        self._index = {term: i for i, term in enumerate(self.vocabulary)}
        self.idf = np.asarray(idf, dtype=np.float32)
        self.weight = np.asarray(weight, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)

    @property
    def parameters(self):
        """Return the number of learned numbers (weights, biases, idf)."""
        return int(self.weight.size + self.bias.size + self.idf.size)

    def features(self, text):
        """Return ``(indices, values)`` of the text's unit-length vector."""
        counts = {}
        for term in terms(text):
            index = self._index.get(term)
            if index is not None:
                counts[index] = counts.get(index, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        indices = np.fromiter(counts, dtype=np.int64, count=len(counts))
        tf = np.array([1.0 + math.log(counts[i]) for i in indices], np.float32)
        values = tf * self.idf[indices]
        return indices, values / np.linalg.norm(values)

    def logits(self, texts):
        """Return the raw logits, one row a text (n x labels, float32)."""
        out = np.tile(self.bias, (len(texts), 1))
        for row, text in enumerate(texts):
            indices, values = self.features(text)
            if len(indices):
                out[row] += values @ self.weight[indices]
        return out

    def save(self, artifact_dir):
        """Write the model's two files into ``artifact_dir``."""
        from safetensors.numpy import save_file

        artifact_dir = Path(artifact_dir)
        save_file(
            {
                "weight": self.weight.astype(np.float16),
                "bias": self.bias.astype(np.float32),
                "idf": self.idf.astype(np.float32),
            },
            str(artifact_dir / TENSORS_FILE),
        )
        (artifact_dir / VOCABULARY_FILE).write_text(
            json.dumps(self.vocabulary, ensure_ascii=False) + "\n", "utf-8"
        )


def load(artifact_dir):
    """Return the artifact's lexical model, or None when it has none."""
    artifact_dir = Path(artifact_dir)
    if not (artifact_dir / TENSORS_FILE).exists():
        return None
    from safetensors.numpy import load_file

    tensors = load_file(str(artifact_dir / TENSORS_FILE))
    vocabulary = json.loads((artifact_dir / VOCABULARY_FILE).read_text("utf-8"))
    if len(vocabulary) != tensors["weight"].shape[0]:
        raise ValueError("lexical vocabulary and weights disagree in size")
    return LexicalModel(vocabulary, tensors["idf"], tensors["weight"], tensors["bias"])


def fit(train_texts, train_y, dev_texts, dev_y, labels, network_dev_logits=None):
    """Fit the vectoriser and one regression per setting; keep the best on dev.

    Each strength and class weighting of the grid is fitted. Without
    ``network_dev_logits`` the best is the one that scores best alone;
    with them, the one whose best blend (:func:`choose_blend`) scores best,
    and ``details["weight"]`` is that blend's weight.

    Returns:
        ``(model, dev_logits, details)``.
    """
    vectoriser, train_x, vocabulary = _vectorise(train_texts)
    dev_x = vectoriser.transform(dev_texts)
    best = None
    for class_weight in _CLASS_WEIGHTS:
        for c in _C_GRID:
            weight, bias = _regress(train_x, train_y, len(labels), c, class_weight)
            dev_logits = np.asarray(dev_x @ weight) + bias
            alone = _merit(dev_logits, dev_y, labels)
            blend = None
            if network_dev_logits is not None:
                blend = choose_blend(
                    network_dev_logits, dev_logits, dev_y, labels, with_merit=True
                )
            merit = alone if blend is None else blend[1]
            logger.info(
                "lexical: C=%s class_weight=%s dev merit alone=%.4f blended=%s",
                c,
                class_weight,
                alone,
                "-" if blend is None else f"{blend[1]:.4f} at weight {blend[0]}",
            )
            if best is None or merit > best[0] + 1e-9:
                settings = {"c": c, "class_weight": class_weight}
                if blend is not None:
                    settings["weight"] = blend[0]
                best = (merit, settings, weight, bias, dev_logits)

    _merit_value, settings, weight, bias, dev_logits = best
    model = LexicalModel(vocabulary, vectoriser.idf_, weight, bias)
    details = {**settings, "features": len(vocabulary), "ngrams": [1, 2]}
    return model, dev_logits.astype(np.float32), details


def fit_fixed(texts, y, labels, *, c, class_weight):
    """Fit the model with settings chosen before (the refit on train and dev)."""
    vectoriser, x, vocabulary = _vectorise(texts)
    weight, bias = _regress(x, y, len(labels), c, class_weight)
    model = LexicalModel(vocabulary, vectoriser.idf_, weight, bias)
    return model, {"c": c, "class_weight": class_weight, "features": len(vocabulary)}


def _vectorise(texts):
    """Fit the TF-IDF vectoriser; return it, the texts' rows and the vocabulary."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectoriser = TfidfVectorizer(
        analyzer=terms,
        sublinear_tf=True,
        min_df=_MIN_DF,
        max_features=_MAX_FEATURES,
        dtype=np.float32,
    )
    x = vectoriser.fit_transform(texts)
    vocabulary = [None] * len(vectoriser.vocabulary_)
    for term, index in vectoriser.vocabulary_.items():
        vocabulary[index] = term
    return vectoriser, x, vocabulary


def _regress(x, y, labels, c, class_weight):
    """Fit one logistic regression; return its weights over every label."""
    from sklearn.linear_model import LogisticRegression

    regression = LogisticRegression(
        C=c, max_iter=500, class_weight=class_weight, random_state=0
    )
    regression.fit(x, y)
    return _full_weights(regression, x.shape[1], labels)


def _merit(logits, dev_y, labels):
    """Weighted plus macro F1 of the arg-max of ``logits`` on dev."""
    from classifier.metrics import score

    gold = [labels[i] for i in dev_y]
    report = score(gold, [labels[i] for i in logits.argmax(axis=1)], None)
    return report["weighted_f1"] + report["macro_f1"]


# Bias given to a class absent from a (small) training sample, so that
# the lexical logits never favour it.
_ABSENT_CLASS_BIAS = -30.0


def _full_weights(regression, features, labels):
    """Return ``(weight features x labels, bias)`` over every label."""
    weight = np.zeros((features, labels), np.float32)
    bias = np.full(labels, _ABSENT_CLASS_BIAS, np.float32)
    classes = regression.classes_
    if len(classes) == 2:
        # A two-class regression has one row: the second class's margin.
        weight[:, classes[1]] = regression.coef_[0]
        bias[classes[1]] = regression.intercept_[0]
        bias[classes[0]] = 0.0
    else:
        weight[:, classes] = regression.coef_.T
        bias[classes] = regression.intercept_
    return weight, bias


def choose_blend(network_logits, lexical_logits, dev_y, labels, *, with_merit=False):
    """Return the weight of the lexical logits that scores best on dev.

    Weighted and macro F1 count equally, so the rare classes are not traded
    for the common ones. With ``with_merit``, return ``(weight, merit)``.
    """
    best = None
    for weight in _BLEND_GRID:
        blended = network_logits + weight * lexical_logits
        merit = _merit(blended, dev_y, labels)
        if best is None or merit > best[1] + 1e-9:
            best = (weight, merit)
    logger.debug("lexical: blend weight=%s dev merit=%.4f", best[0], best[1])
    return best if with_merit else best[0]
