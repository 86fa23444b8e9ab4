"""Full fine-tuning of the encoder and head (``classifier.train --method finetune``).

Every weight is trained with class-weighted cross-entropy, AdamW, a linear
warm-up and decay, and dynamic padding over length-sorted buckets. The
epoch that scores best on dev (weighted plus macro F1) is kept, its
temperature is fitted on dev, and the whole network is written as fp16
(about 45 MB). A GPU makes this minutes; on this 2-core CPU an epoch
over HumAID's train.tsv takes about 35 minutes.
"""

import logging
import math
import random
import time

import numpy as np
import torch
from tqdm import tqdm

from classifier import model as model_lib
from classifier.engine import encode
from classifier.engine import pad_batch
from classifier.labels import LABEL_TO_INDEX
from classifier.labels import LABELS
from classifier.metrics import score

logger = logging.getLogger(__name__)

_WARMUP_SHARE = 0.06
_WEIGHT_DECAY = 0.01
_MAX_GRAD_NORM = 1.0
# Batches are drawn from buckets of this many batches sorted by length, so
# padding stays small while the order stays random.
_BUCKET_BATCHES = 50
_EVAL_BATCH = 128


def class_weights(labels):
    """Return inverse-square-root frequency weights, mean 1 over the rows.

    Rare classes (missing_or_found_people has 250 of 53,531 rows) weigh
    more without drowning the frequent ones, as full inverse weights do.
    """
    counts = np.bincount(labels, minlength=len(LABELS)).astype(np.float64)
    weights = 1.0 / np.sqrt(np.maximum(counts, 1.0))
    weights *= len(labels) / float((weights[labels]).sum())
    return torch.tensor(weights, dtype=torch.float32)


def _batches(ids, batch_size, rng):
    order = list(range(len(ids)))
    rng.shuffle(order)
    span = batch_size * _BUCKET_BATCHES
    batches = []
    for start in range(0, len(order), span):
        bucket = sorted(order[start : start + span], key=lambda i: len(ids[i]))
        batches += [
            bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size)
        ]
    rng.shuffle(batches)
    return batches


def _autocast(device, bf16=False):
    """Return the autocast context for a training step.

    On a GPU steps always run in bfloat16. On the CPU they do only when
    asked: with AVX-512 BF16 a step takes about 0.57 of its fp32 time
    here. The weights, gradients and optimiser state stay fp32 either way.
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


def dev_logits(model, tokenizer, ids, device):
    """Return the model's logits for encoded texts, in order (n x labels)."""
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = torch.zeros((len(ids), len(LABELS)))
    with torch.inference_mode(), _autocast(device):
        for start in range(0, len(order), _EVAL_BATCH):
            chunk = order[start : start + _EVAL_BATCH]
            input_ids, mask = pad_batch([ids[i] for i in chunk], tokenizer.pad_token_id)
            logits = model(input_ids.to(device), mask.to(device)).float().cpu()
            out[chunk] = logits
    return out


def finetune(
    train_rows,
    dev_rows,
    *,
    epochs,
    batch_size,
    lr,
    seed,
    max_length,
    start=None,
    class_weighted=True,
    evals_per_epoch=1,
    bf16=False,
    stop_at_epoch=None,
):
    """Train every weight; return ``(model, tokenizer, dev_logits, details)``.

    ``start`` is a ``(model, tokenizer)`` pair to go on training (the
    refine stage); without it training starts from the packaged encoder
    and a new head. When given, the starting network is scored on dev too
    and kept if nothing trained here beats it. ``class_weighted`` weighs
    the loss by inverse square-root class frequency. The network is scored
    on dev ``evals_per_epoch`` times an epoch and the best is kept.
    ``bf16`` runs the CPU's training steps in bfloat16 autocast; dev is
    always scored in full precision, as the service runs.

    With ``dev_rows`` None (the refit on train and dev together) nothing
    is scored: training stops at ``stop_at_epoch`` (a fraction of the
    ``epochs`` the schedule spans, the checkpoint dev chose before) or at
    the end, that network is returned, and its dev logits are None.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if start is None:
        model, tokenizer = model_lib.load_base(len(LABELS), normalize=False)
    else:
        model, tokenizer = start
    model.to(device)
    train_ids, _ = encode(tokenizer, [r[1] for r in train_rows], max_length)
    train_y = np.array([LABEL_TO_INDEX[r[2]] for r in train_rows])
    if dev_rows is not None:
        dev_ids, _ = encode(tokenizer, [r[1] for r in dev_rows], max_length)
        dev_gold = [r[2] for r in dev_rows]

    loss_fn = torch.nn.CrossEntropyLoss(
        weight=class_weights(train_y).to(device) if class_weighted else None
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=_WEIGHT_DECAY)
    steps = epochs * math.ceil(len(train_ids) / batch_size)
    warmup = max(1, int(steps * _WARMUP_SHARE))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda step: min(
            (step + 1) / warmup, max(0.0, (steps - step) / (steps - warmup))
        ),
    )
    rng = random.Random(seed)
    labels = torch.as_tensor(train_y)
    best = None
    started = time.time()

    def checkpoint(name):
        nonlocal best
        logits = dev_logits(model, tokenizer, dev_ids, device)
        probs = torch.softmax(logits, dim=-1)
        confidence, index = probs.max(dim=-1)
        report = score(
            dev_gold, [LABELS[i] for i in index.tolist()], confidence.tolist()
        )
        merit = report["weighted_f1"] + report["macro_f1"]
        logger.info(
            "finetune: %s dev weighted_f1=%s macro_f1=%s",
            name,
            report["weighted_f1"],
            report["macro_f1"],
        )
        if best is None or merit > best[0]:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best = (merit, name, state, logits)

    if start is not None and dev_rows is not None:
        checkpoint("start")
    steps_to_run = steps
    if stop_at_epoch is not None:
        steps_to_run = round(steps * stop_at_epoch / epochs)
    done = 0
    for epoch in range(1, epochs + 1):
        if done >= steps_to_run:
            break
        model.train()
        batches = _batches(train_ids, batch_size, rng)
        marks = {
            round(len(batches) * part / evals_per_epoch): part
            for part in range(1, evals_per_epoch + 1)
        }
        for step, chunk in enumerate(
            tqdm(batches, desc=f"epoch {epoch}/{epochs}", unit="batch"), start=1
        ):
            input_ids, mask = pad_batch(
                [train_ids[i] for i in chunk], tokenizer.pad_token_id
            )
            with _autocast(device, bf16):
                logits = model(input_ids.to(device), mask.to(device))
            loss = loss_fn(logits.float(), labels[chunk].to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), _MAX_GRAD_NORM)
            optimiser.step()
            schedule.step()
            done += 1
            if step in marks and dev_rows is not None:
                part = marks[step]
                checkpoint(f"epoch {epoch - 1 + part / evals_per_epoch:g}")
                model.train()
            if done >= steps_to_run:
                break

    if dev_rows is None:
        reached = done / math.ceil(len(train_ids) / batch_size)
        best = (None, f"epoch {reached:g}", None, None)
    else:
        model.load_state_dict(best[2])
    model.to("cpu").eval()
    details = {
        "method": "full fine-tune, "
        + ("class-weighted" if class_weighted else "unweighted")
        + " cross-entropy",
        "epochs": epochs,
        "best_checkpoint": best[1],
        "batch_size": batch_size,
        "learning_rate": lr,
        "device": device.type,
        "precision": "bfloat16 autocast"
        if bf16 or device.type == "cuda"
        else "float32",
        "seconds": round(time.time() - started),
    }
    return model, tokenizer, best[3], details
