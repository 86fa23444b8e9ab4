"""Scores reported for a model: F1 by class, weighted and macro, and ECE."""

from sklearn.metrics import accuracy_score
from sklearn.metrics import f1_score

from classifier.labels import LABELS

_ECE_BINS = 15


def expected_calibration_error(confidences, correct, bins=_ECE_BINS):
    """Return the expected calibration error over equal-width bins."""
    total = len(confidences)
    if total == 0:
        return 0.0

    error = 0.0
    for index in range(bins):
        low, high = index / bins, (index + 1) / bins
        members = [
            i
            for i, confidence in enumerate(confidences)
            if low < confidence <= high or (index == 0 and confidence == 0.0)
        ]
        if not members:
            continue
        accuracy = sum(correct[i] for i in members) / len(members)
        confidence = sum(confidences[i] for i in members) / len(members)
        error += len(members) / total * abs(accuracy - confidence)
    return error


def score(gold, predicted, confidences):
    """Return the report dict for gold and predicted label names.

    ``confidences`` may be None when only the F1 scores matter (choosing
    a setting on dev); ``ece`` is then None.
    """
    per_class = f1_score(
        gold, predicted, labels=list(LABELS), average=None, zero_division=0
    )
    correct = [g == p for g, p in zip(gold, predicted, strict=False)]
    return {
        "n": len(gold),
        "accuracy": round(accuracy_score(gold, predicted), 4),
        "weighted_f1": round(
            f1_score(gold, predicted, average="weighted", zero_division=0), 4
        ),
        "macro_f1": round(
            f1_score(
                gold, predicted, labels=list(LABELS), average="macro", zero_division=0
            ),
            4,
        ),
        "per_class_f1": {
            label: round(float(value), 4)
            for label, value in zip(LABELS, per_class, strict=False)
        },
        "ece": (
            None
            if confidences is None
            else round(expected_calibration_error(confidences, correct), 4)
        ),
    }
