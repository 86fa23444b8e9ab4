"""Reading the labelled TSV files of the HumAID layout."""

import csv
import os
from pathlib import Path

from classifier.labels import LABEL_TO_INDEX

_DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "humaid"


def data_dir():
    """Return the HumAID folder: ``AICRISISALERT_DATA_DIR`` or ../shared."""
    return Path(os.environ.get("AICRISISALERT_DATA_DIR", _DEFAULT_DATA_DIR))


def read_tsv(path, limit=None):
    """Read ``tweet_id``, ``tweet_text`` and ``class_label`` rows from a TSV.

    Args:
        path: the file to read; one header row, tab-separated, no quoting.
        limit: read at most this many rows.

    Returns:
        A list of ``(tweet_id, text, label)`` tuples.

    Raises:
        ValueError: a column is missing or a label is not one of the ten.
    """
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"tweet_id", "tweet_text", "class_label"} - set(
            reader.fieldnames or ()
        )
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")

        for row in reader:
            if limit is not None and len(rows) >= limit:
                break
            label = row["class_label"]
            if label not in LABEL_TO_INDEX:
                raise ValueError(f"{path}: unknown label {label!r}")
            rows.append((row["tweet_id"], row["tweet_text"], label))
    return rows
