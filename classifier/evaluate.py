"""Score a trained artifact on a labelled TSV: ``python -m classifier.evaluate``.

Prints per-class scores as it goes and, as its last line, one JSON object
with ``n``, ``accuracy``, ``weighted_f1``, ``macro_f1``, ``per_class_f1``,
``ece``, ``parameters`` and ``model_version``.
"""

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from classifier import artifact
from classifier import card
from classifier.data import data_dir
from classifier.data import read_tsv
from classifier.engine import Engine
from classifier.metrics import score
from classifier.model import DEFAULT_ARTIFACT_DIR

_CHUNK = 256


def evaluate(engine, rows, *, batch_size=64, progress=True):
    """Classify ``rows`` and return the score report."""
    texts = [row[1] for row in rows]
    predicted, confidences = [], []
    with tqdm(
        total=len(texts), disable=not progress, unit="text", file=sys.stderr
    ) as bar:
        for start in range(0, len(texts), _CHUNK):
            for result in engine.classify(
                texts[start : start + _CHUNK], batch_size=batch_size
            ):
                predicted.append(result["category"])
                confidences.append(result["confidence"])
            bar.update(min(_CHUNK, len(texts) - start))
    report = score([row[2] for row in rows], predicted, confidences)
    report["parameters"] = engine.parameters
    report["model_version"] = engine.version
    return report


def record_test_scores(artifact_dir, report):
    """Store ``report`` as the artifact's test scores and rewrite the card."""
    config = artifact.read_config(artifact_dir)
    config.setdefault("scores", {})["test"] = {
        key: value for key, value in report.items() if key != "model_version"
    }
    config["parameters"] = report["parameters"]
    artifact.write_config(artifact_dir, config)
    card.write(artifact_dir)


def main(argv=None):
    """Evaluate and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_dir() / "test.tsv")
    parser.add_argument("--model", type=Path, default=DEFAULT_ARTIFACT_DIR)
    parser.add_argument("--limit", type=int, help="score only the first N rows")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int)
    parser.add_argument(
        "--write-card",
        action="store_true",
        help="record these scores as the artifact's test scores and rewrite its card",
    )
    args = parser.parse_args(argv)

    engine = Engine(args.model, threads=args.threads)
    report = evaluate(
        engine, read_tsv(args.data, limit=args.limit), batch_size=args.batch_size
    )
    if args.write_card:
        record_test_scores(args.model, report)
    for label, value in report["per_class_f1"].items():
        print(f"{label:<40} f1={value:.4f}")
    print(json.dumps(report, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
