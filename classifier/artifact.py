"""The trained artifact on disk: its files, config and content-hash version.

Free of torch, so the web process can describe the model without loading it.
"""

import hashlib
import json
from pathlib import Path

DEFAULT_ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts" / "minilm-humaid"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "MODEL_CARD.md"
# The word n-gram model blended with the network (classifier/lexical.py),
# when the artifact has one.
LEXICAL_FILES = ("lexical.safetensors", "lexical.json")
# Keys of config.json that describe the model itself; scores and notes
# may change without changing the version.
_VERSIONED_KEYS = ("labels", "max_length", "normalize", "temperature")


def read_config(artifact_dir=DEFAULT_ARTIFACT_DIR):
    """Return the parsed ``config.json`` of an artifact."""
    return json.loads((Path(artifact_dir) / CONFIG_FILE).read_text("utf-8"))


def write_config(artifact_dir, config):
    """Write ``config.json`` (sorted keys, so diffs stay small)."""
    path = Path(artifact_dir) / CONFIG_FILE
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", "utf-8")


def artifact_version(artifact_dir=DEFAULT_ARTIFACT_DIR):
    """Return the content hash that names an artifact's version."""
    config = read_config(artifact_dir)
    digest = hashlib.sha256()
    digest.update((Path(artifact_dir) / WEIGHTS_FILE).read_bytes())
    if "lexical" in config:
        for name in LEXICAL_FILES:
            digest.update((Path(artifact_dir) / name).read_bytes())
    keys = _VERSIONED_KEYS + (("lexical",) if "lexical" in config else ())
    described = {key: config[key] for key in keys}
    digest.update(json.dumps(described, sort_keys=True).encode("utf-8"))
    return "minilm-humaid-" + digest.hexdigest()[:12]


def describe(artifact_dir=DEFAULT_ARTIFACT_DIR):
    """Return what ``GET /v1/model`` shows: config, version and the card."""
    config = read_config(artifact_dir)
    card = Path(artifact_dir) / CARD_FILE
    return {
        "version": artifact_version(artifact_dir),
        "base_model": config.get("base_model"),
        "labels": config["labels"],
        "max_length": config["max_length"],
        "temperature": config["temperature"],
        "lexical": config.get("lexical"),
        "parameters": config.get("parameters"),
        "training": config.get("training", {}),
        "scores": config.get("scores", {}),
        "card": card.read_text("utf-8") if card.exists() else None,
    }
