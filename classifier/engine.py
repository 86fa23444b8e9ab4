"""The inference engine the workers call: batched, length-bucketed, calibrated."""

import logging
import os
import threading
import time
from contextlib import nullcontext

from classifier.artifact import DEFAULT_ARTIFACT_DIR
from classifier.text import normalise

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32


def encode(tokenizer, texts, max_length):
    """Normalise and tokenise ``texts``, cutting each at ``max_length``.

    Tokenising without truncation first tells which texts were cut, so
    the result can say so. Returns ``(id lists, truncated flags)``.
    """
    encoded = tokenizer(
        [normalise(text) for text in texts],
        add_special_tokens=True,
        truncation=False,
        verbose=False,
    )["input_ids"]
    sep = tokenizer.sep_token_id
    ids, truncated = [], []
    for row in encoded:
        cut = len(row) > max_length
        ids.append(row[: max_length - 1] + [sep] if cut else row)
        truncated.append(cut)
    return ids, truncated


def pad_batch(id_rows, pad_id):
    """Return ``(input_ids, attention_mask)`` tensors for a list of id lists."""
    import torch

    width = max(len(row) for row in id_rows)
    input_ids = torch.full((len(id_rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(id_rows), width), dtype=torch.long)
    for index, row in enumerate(id_rows):
        input_ids[index, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[index, : len(row)] = 1
    return input_ids, mask


class Engine:
    """Classify texts with a trained artifact.

    Texts are normalised, tokenised once, sorted by length so that each
    forward pass pads little, and returned in their original order. A
    text longer than the model's maximum length is cut and marked
    ``truncated``.
    """

    def __init__(self, artifact_dir=None, *, device=None, threads=None):
        import torch

        from classifier import model as model_lib

        if threads:
            torch.set_num_threads(int(threads))
        self._torch = torch
        started = time.perf_counter()
        self.model, self.tokenizer, self.config = model_lib.load_artifact(
            artifact_dir or DEFAULT_ARTIFACT_DIR
        )
        self.device = torch.device(
            device or ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.model.to(self.device)
        self.labels = tuple(self.config["labels"])
        self.version = self.config["version"]
        self.max_length = int(self.config["max_length"])
        self.temperature = float(self.config["temperature"])
        # The word n-gram model blended into the logits, when the artifact
        # has one (classifier/lexical.py); numpy only, so no device.
        from classifier import lexical

        self.lexical = lexical.load(artifact_dir or DEFAULT_ARTIFACT_DIR)
        self.lexical_weight = float((self.config.get("lexical") or {}).get("weight", 0))
        # One forward pass at a time: torch already uses every thread it
        # was given, and the model is not safe to share between passes.
        self._lock = threading.Lock()
        logger.info(
            "engine: loaded version=%s device=%s threads=%d seconds=%.1f",
            self.version,
            self.device,
            torch.get_num_threads(),
            time.perf_counter() - started,
        )

    @property
    def parameters(self):
        """Return the learned numbers of the network and the lexical model."""
        count = sum(p.numel() for p in self.model.parameters())
        return count + (self.lexical.parameters if self.lexical is not None else 0)

    def _forward(self, id_rows):
        """Return the network's raw logits for id lists of similar length."""
        torch = self._torch
        input_ids, mask = pad_batch(id_rows, self.tokenizer.pad_token_id)
        autocast = (
            torch.autocast("cuda", dtype=torch.float16)
            if self.device.type == "cuda"
            else nullcontext()
        )
        with torch.inference_mode(), autocast:
            logits = self.model(input_ids.to(self.device), mask.to(self.device))
        return logits.float().cpu()

    def logits(self, texts, *, batch_size=DEFAULT_BATCH_SIZE):
        """Return ``(uncalibrated logits n x labels, truncated flags)``.

        The logits are the network's plus, when the artifact has a
        lexical model, its logits times the blend weight chosen on dev.
        """
        torch = self._torch
        ids, truncated = encode(self.tokenizer, texts, self.max_length)
        order = sorted(range(len(ids)), key=lambda index: len(ids[index]))
        out = torch.zeros((len(ids), len(self.labels)))
        with self._lock:
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                out[chunk] = self._forward([ids[i] for i in chunk])
        if self.lexical is not None and self.lexical_weight:
            out += self.lexical_weight * torch.from_numpy(self.lexical.logits(texts))
        return out, truncated

    def probabilities(self, texts, *, batch_size=DEFAULT_BATCH_SIZE):
        """Return ``(calibrated probability rows, truncated flags)`` in order."""
        if not texts:
            return [], []

        logits, truncated = self.logits(texts, batch_size=batch_size)
        probs = self._torch.softmax(logits / self.temperature, dim=-1)
        return probs.tolist(), truncated

    def classify(self, texts, *, batch_size=DEFAULT_BATCH_SIZE):
        """Classify ``texts``; return one result dict per text, in order."""
        probs, truncated = self.probabilities(texts, batch_size=batch_size)
        results = []
        for row, cut in zip(probs, truncated, strict=False):
            best = max(range(len(row)), key=row.__getitem__)
            results.append(
                {
                    "category": self.labels[best],
                    "confidence": row[best],
                    "scores": dict(zip(self.labels, row, strict=False)),
                    "model_version": self.version,
                    "truncated": cut,
                }
            )
        return results


def release_free_memory():
    """Hand memory freed by the last passes back to the system (glibc only).

    Forward passes of many shapes (batch sizes and lengths vary from pass
    to pass) leave glibc's heaps fragmented, and a worker's resident size
    crept up by about 25 KB a job over 10,000 jobs. ``malloc_trim`` after
    each pass keeps it flat (measured: 516-518 MB over 6,000 jobs in
    passes of up to 256, against 584 MB growing to 722 MB without it) at
    no measurable cost. Returns whether it ran.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def _malloc_trim():
    if "trim" not in _libc:
        try:
            import ctypes

            _libc["trim"] = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            # Not glibc (musl, macOS): nothing to trim with.
            _libc["trim"] = None
    return _libc["trim"]


_libc = {}
_state = {"engine": None, "thread": None, "error": None}
_state_lock = threading.Lock()


def _load():
    try:
        _state["engine"] = Engine(
            os.environ.get("AICRISISALERT_MODEL_DIR") or None,
            device=os.environ.get("AICRISISALERT_DEVICE") or None,
            threads=os.environ.get("AICRISISALERT_TORCH_THREADS") or None,
        )
        _state["error"] = None
    except Exception as error:  # noqa: BLE001  (re-raised by get_engine)
        logger.exception("engine: load failed")
        _state["error"] = error


def preload_in_background():
    """Start loading this process's engine in a thread; return the thread.

    Worker processes call this as they start, so the model (6-8 s to load
    on two cores, far longer on a busy machine) is usually ready before
    the first job arrives. Loading always runs in this thread, never in a
    task, so a task's time limit can interrupt the wait but never the load.
    """
    with _state_lock:
        thread = _state["thread"]
        if _state["engine"] is None and (thread is None or not thread.is_alive()):
            thread = threading.Thread(target=_load, name="engine-load", daemon=True)
            _state["thread"] = thread
            thread.start()
        return thread


def get_engine():
    """Return this process's engine, waiting for it to load if need be.

    Never called at import: workers call it after the fork, so the parent
    process never holds the model.

    Raises:
        Exception: whatever made the load fail (a later call tries again).
    """
    if _state["engine"] is not None:
        return _state["engine"]

    preload_in_background().join()
    if _state["engine"] is None:
        raise _state["error"] or RuntimeError("engine: load did not finish")
    return _state["engine"]


def engine_loaded():
    """Return whether this process has its engine in memory already."""
    return _state["engine"] is not None
