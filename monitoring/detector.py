"""The request anomaly detector: an IsolationForest over request features.

Features, as the security design lists them: text length, hour of day,
user-agent length, weekend, and the requests of the same key (or address,
without a key) in the hour before. Lengths and the rate are taken as
``log1p``, so the forest's random splits spread over orders of magnitude
instead of bunching at the long tail.

Scores are in [0, 1]. The forest's own score (the mean isolation depth
mapped by ``2 ** -(depth / c(n))``, about 0.5 for ordinary points) is put
through a logistic that sends the baseline's median to 0.5 and its
``quantile`` to 0.8, so the seed's threshold of 0.8 flags about
``1 - quantile`` of requests like the baseline, and far fewer of them in
a row from one client.

A forest cannot tell how far beyond its training range a value lies:
every split sends a value past the largest one seen down the same branch
as that largest one, so a 9,000-character text scores like the longest
tweet of the baseline. Each feature's baseline range is therefore kept
too, and a request outside it scores ``1 - 0.2 ** (excess / 0.5)``,
where ``excess`` is how far outside it lies in widths of that range (half
a width out scores 0.8). The request's score is the higher of the two.
"""

import bisect
import logging
import math
import os
import tempfile
from collections import defaultdict
from datetime import UTC
from pathlib import Path

import joblib
import numpy as np
from sklearn.ensemble import IsolationForest

logger = logging.getLogger(__name__)

FEATURES = (
    "text_length",
    "hour_of_day",
    "user_agent_length",
    "is_weekend",
    "requests_last_hour",
)
_HOUR_SECONDS = 3600
_LOGIT_08 = math.log(4)  # logistic(ln 4) = 0.8
# Range widths outside the baseline at which the range score reaches 0.8.
_EXCESS_AT_08 = 0.5
_cache = {}


def subject_of(row):
    """Return the key or address a request is counted under."""
    if row.key_prefix:
        return f"key:{row.key_prefix}"
    return f"address:{row.client_address}"


def features(rows, *, scored=None):
    """Return ``(matrix, scored rows)`` for the submits among ``scored``.

    Args:
        rows: request-log rows (any order) that cover the hour before every
            scored row, so its request rate can be counted.
        scored: the rows to build features for; every submit in ``rows``
            when None. Rows without a text length (polls) are skipped.
    """
    times = defaultdict(list)
    for row in rows:
        times[subject_of(row)].append(_utc(row.created_at).timestamp())
    for stamps in times.values():
        stamps.sort()

    kept, matrix = [], []
    for row in rows if scored is None else scored:
        if row.text_length is None:
            continue
        moment = _utc(row.created_at)
        stamps = times[subject_of(row)]
        now = moment.timestamp()
        rate = bisect.bisect_left(stamps, now) - bisect.bisect_left(
            stamps, now - _HOUR_SECONDS
        )
        matrix.append(
            [
                math.log1p(row.text_length),
                moment.hour,
                math.log1p(row.user_agent_length or 0),
                1.0 if moment.weekday() >= 5 else 0.0,
                math.log1p(rate),
            ]
        )
        kept.append(row)
    return np.array(matrix, dtype=float).reshape(-1, len(FEATURES)), kept


def _utc(moment):
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Detector:
    """A fitted forest and the calibration that maps its score to [0, 1]."""

    def __init__(self, forest, *, center, scale, low, high, fitted_at, baseline_rows):
        self.forest = forest
        self.center = center
        self.scale = scale
        self.low = low
        self.high = high
        self.fitted_at = fitted_at
        self.baseline_rows = baseline_rows

    @classmethod
    def fit(cls, matrix, *, quantile, fitted_at, seed=42):
        """Fit on a baseline of ordinary requests (one row per request)."""
        forest = IsolationForest(n_estimators=200, random_state=seed)
        forest.fit(matrix)
        raw = -forest.score_samples(matrix)
        center = float(np.median(raw))
        # Never zero: a baseline of identical requests still maps sanely.
        spread = max(float(np.quantile(raw, quantile)) - center, 1e-3)
        return cls(
            forest,
            center=center,
            scale=spread / _LOGIT_08,
            low=matrix.min(axis=0),
            high=matrix.max(axis=0),
            fitted_at=fitted_at,
            baseline_rows=len(matrix),
        )

    def score(self, matrix):
        """Return one score in [0, 1] per row; higher is more unusual."""
        if len(matrix) == 0:
            return np.zeros(0)
        raw = -self.forest.score_samples(matrix)
        forest_score = 1.0 / (1.0 + np.exp(-(raw - self.center) / self.scale))
        # A feature seen at one value only (all weekdays) still has a width.
        width = np.maximum(self.high - self.low, 1.0)
        outside = np.maximum(self.low - matrix, matrix - self.high).clip(min=0)
        excess = (outside / width).max(axis=1)
        range_score = 1.0 - 0.2 ** (excess / _EXCESS_AT_08)
        return np.maximum(forest_score, range_score)

    def save(self, path):
        """Write the detector to ``path`` atomically (a reader never sees half)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(handle)
        try:
            joblib.dump(self, temporary)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)


def load(path):
    """Return the detector at ``path``, re-read only when the file changes.

    Returns None when nothing has been fitted yet.
    """
    try:
        stamp = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None
    cached = _cache.get(str(path))
    if cached is None or cached[0] != stamp:
        # The file is ours, written by Detector.save (joblib is pickle).
        cached = (stamp, joblib.load(path))
        _cache[str(path)] = cached
    return cached[1]
