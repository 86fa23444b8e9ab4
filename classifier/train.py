"""Train the classifier: ``python -m classifier.train``.

The default method keeps the packaged encoder frozen, extracts one
mean-pooled vector per tweet, fits a multinomial logistic-regression head
on train.tsv (its strength chosen on dev.tsv), calibrates a softmax
temperature on dev.tsv, and writes the artifact the service loads. The
seed is fixed, so the same data gives the same weights.
"""

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

from classifier import card
from classifier import model as model_lib
from classifier.data import data_dir
from classifier.data import read_tsv
from classifier.engine import encode
from classifier.engine import pad_batch
from classifier.labels import LABEL_TO_INDEX
from classifier.labels import LABELS
from classifier.metrics import score

logger = logging.getLogger(__name__)

SEED = 13
MAX_LENGTH = 128
_FEATURE_BATCH = 64
# Inverse regularisation strengths tried on dev for the linear head.
_HEAD_C_GRID = (4.0, 16.0, 64.0)


def seed_everything(seed=SEED):
    """Fix every random generator training touches."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def extract_features(model, tokenizer, texts, *, desc):
    """Return the frozen encoder's pooled vectors for ``texts`` (n x hidden)."""
    ids, _ = encode(tokenizer, texts, MAX_LENGTH)
    order = sorted(range(len(ids)), key=lambda index: len(ids[index]))
    features = np.zeros((len(ids), model.encoder.config.hidden_size), np.float32)
    with torch.inference_mode(), tqdm(total=len(ids), desc=desc, unit="text") as bar:
        for start in range(0, len(order), _FEATURE_BATCH):
            chunk = order[start : start + _FEATURE_BATCH]
            input_ids, mask = pad_batch([ids[i] for i in chunk], tokenizer.pad_token_id)
            features[chunk] = model.pool(input_ids, mask).numpy()
            bar.update(len(chunk))
    return features


def fit_temperature(logits, gold):
    """Return the softmax temperature that minimises NLL on ``logits``."""
    logits = torch.as_tensor(logits, dtype=torch.float32)
    gold = torch.as_tensor(gold, dtype=torch.long)
    log_t = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), gold)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp())


def _predict(logits, temperature):
    probs = torch.softmax(torch.as_tensor(logits) / temperature, dim=-1)
    confidence, best = probs.max(dim=-1)
    return [LABELS[i] for i in best.tolist()], confidence.tolist()


# Bias given to a class absent from a (small) training sample, so that
# the head never predicts it.
_ABSENT_CLASS_BIAS = -30.0


def _fit_linear(train_x, train_y, c):
    """Fit a logistic regression; return its weights over all ten classes."""
    head = LogisticRegression(C=c, max_iter=2000, random_state=SEED)
    head.fit(train_x, train_y)
    weight = np.zeros((len(LABELS), train_x.shape[1]), np.float32)
    bias = np.full(len(LABELS), _ABSENT_CLASS_BIAS, np.float32)
    weight[head.classes_] = head.coef_
    bias[head.classes_] = head.intercept_
    return weight, bias


def train_head(train_x, train_y, dev_x, dev_y):
    """Fit the head for each strength on the grid; keep the best on dev."""
    best = None
    dev_gold = [LABELS[i] for i in dev_y]
    for c in _HEAD_C_GRID:
        head = _fit_linear(train_x, train_y, c)
        predicted, confidence = _predict(dev_x @ head[0].T + head[1], 1.0)
        report = score(dev_gold, predicted, confidence)
        # Weighted and macro F1 count equally, so the rare classes that
        # responders care most about are not traded for the common ones.
        merit = report["weighted_f1"] + report["macro_f1"]
        logger.info(
            "train: C=%s dev weighted_f1=%s macro_f1=%s",
            c,
            report["weighted_f1"],
            report["macro_f1"],
        )
        if best is None or merit > best[0]:
            best = (merit, c, head)
    return best[1], best[2]


def main(argv=None):
    """Train, calibrate, score and write the artifact."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=data_dir())
    parser.add_argument("--out", type=Path, default=model_lib.DEFAULT_ARTIFACT_DIR)
    parser.add_argument("--limit", type=int, help="use at most this many rows a file")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--method",
        choices=("head", "finetune", "refine", "blend", "refit"),
        default="head",
        help="head: frozen encoder and a linear head (minutes on a CPU); "
        "finetune: every weight (about 35 minutes an epoch on 2 CPU cores); "
        "refine: go on training the network already in --out with an "
        "unweighted loss (run after finetune; --epochs 1 --lr 2e-5); "
        "blend: keep the network already in --out and refit only the lexical "
        "model, its blend weight and the temperature; "
        "refit: train again on train.tsv and dev.tsv together with every "
        "setting dev chose for the model in --out (run last)",
    )
    parser.add_argument("--epochs", type=int, default=3, help="finetune, refine")
    parser.add_argument("--batch-size", type=int, default=32, help="finetune, refine")
    parser.add_argument("--lr", type=float, default=5e-5, help="finetune, refine")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="finetune, refine, refit: run the CPU's training steps in bfloat16 "
        "autocast (about 1.75 times faster where the CPU has AVX-512 BF16)",
    )
    parser.add_argument(
        "--no-lexical",
        action="store_true",
        help="do not fit and blend the word n-gram model (classifier/lexical.py)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    seed_everything()
    torch.set_num_threads(args.threads)
    started = time.time()

    train_rows = read_tsv(args.data_dir / "train.tsv", limit=args.limit)
    dev_rows = read_tsv(args.data_dir / "dev.tsv", limit=args.limit)
    if args.method in ("finetune", "refine"):
        return _finetune_main(args, train_rows, dev_rows)
    if args.method == "blend":
        return _blend_main(args, train_rows, dev_rows)
    if args.method == "refit":
        return _refit_main(args, train_rows, dev_rows)

    model, tokenizer = model_lib.load_base(len(LABELS), normalize=True)
    model.eval()
    train_x = extract_features(
        model, tokenizer, [r[1] for r in train_rows], desc="train"
    )
    dev_x = extract_features(model, tokenizer, [r[1] for r in dev_rows], desc="dev")
    train_y = np.array([LABEL_TO_INDEX[r[2]] for r in train_rows])
    dev_y = np.array([LABEL_TO_INDEX[r[2]] for r in dev_rows])

    c, head = train_head(train_x, train_y, dev_x, dev_y)
    weight, bias = head
    dev_logits = dev_x @ weight.T + bias
    lexical_model, lexical_config, temperature, dev_report = _blend_and_calibrate(
        args, train_rows, dev_rows, dev_logits
    )

    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(weight))
        model.head.bias.copy_(torch.as_tensor(bias))
    config = {
        "base_model": model_lib.BASE_MODEL_PACKAGE,
        "labels": list(LABELS),
        "max_length": MAX_LENGTH,
        "normalize": True,
        "temperature": round(temperature, 6),
        "training": {
            "method": "frozen encoder, logistic-regression head",
            "command": _command(args),
            "head_c": c,
            "seed": SEED,
            "train_rows": len(train_rows),
            "dev_rows": len(dev_rows),
            "seconds": round(time.time() - started),
        },
        "scores": {"dev": dev_report},
        "parameters": _parameters(model, lexical_model),
    }
    _set_lexical(args.out, config, lexical_model, lexical_config)
    version = model_lib.save_artifact(
        args.out, model, config, trainable_prefixes=("head.",)
    )
    card.write(args.out)
    print(json.dumps({"version": version, "dev": dev_report, "out": str(args.out)}))
    return 0


def _finetune_main(args, train_rows, dev_rows):
    from classifier import artifact
    from classifier.finetune import finetune

    refine = args.method == "refine"
    earlier = None
    start = None
    if refine:
        # Stage two: the network in --out, trained on with an unweighted
        # loss. The class-weighted first stage leans towards the rare
        # classes; this stage gives the common ones back their due.
        earlier = artifact.read_config(args.out)["training"]
        model, tokenizer, _config = model_lib.load_artifact(args.out)
        start = (model, tokenizer)
    model, _tokenizer, dev_logits, details = finetune(
        train_rows,
        dev_rows,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=SEED,
        max_length=MAX_LENGTH,
        start=start,
        class_weighted=not refine,
        evals_per_epoch=2 if refine else 1,
        bf16=args.bf16,
    )
    if refine:
        details = {**details, "first_stage": earlier.get("first_stage", earlier)}
    lexical_model, lexical_config, temperature, dev_report = _blend_and_calibrate(
        args, train_rows, dev_rows, dev_logits.numpy()
    )
    config = {
        "base_model": model_lib.BASE_MODEL_PACKAGE,
        "labels": list(LABELS),
        "max_length": MAX_LENGTH,
        "normalize": False,
        "temperature": round(temperature, 6),
        "training": {
            **details,
            "command": _command(args),
            "seed": SEED,
            "train_rows": len(train_rows),
            "dev_rows": len(dev_rows),
        },
        "scores": {"dev": dev_report},
        "parameters": _parameters(model, lexical_model),
    }
    _set_lexical(args.out, config, lexical_model, lexical_config)
    version = model_lib.save_artifact(
        args.out, model, config, trainable_prefixes=("encoder.", "head.")
    )
    card.write(args.out)
    print(json.dumps({"version": version, "dev": dev_report, "out": str(args.out)}))
    return 0


def _command(args):
    parts = ["python -m classifier.train", f"--method {args.method}"]
    if args.method in ("finetune", "refine"):
        parts.append(f"--epochs {args.epochs}")
        parts.append(f"--lr {args.lr:g}")
    if args.bf16 and args.method in ("finetune", "refine", "refit"):
        parts.append("--bf16")
    if args.no_lexical:
        parts.append("--no-lexical")
    if args.limit:
        parts.append(f"--limit {args.limit}")
    return " ".join(parts)


def _parameters(model, lexical_model):
    count = sum(p.numel() for p in model.parameters())
    return count + (lexical_model.parameters if lexical_model is not None else 0)


def _blend_lexical(args, train_rows, dev_rows, network_dev_logits):
    """Fit the lexical model and its weight; return it with blended dev logits.

    Returns ``(model or None, config entry or None, dev logits)``; the
    model is None when --no-lexical is given or dev prefers weight 0.
    """
    if args.no_lexical:
        return None, None, network_dev_logits

    from classifier import lexical

    train_y = np.array([LABEL_TO_INDEX[r[2]] for r in train_rows])
    dev_y = np.array([LABEL_TO_INDEX[r[2]] for r in dev_rows])
    lexical_model, lexical_dev, details = lexical.fit(
        [r[1] for r in train_rows],
        train_y,
        [r[1] for r in dev_rows],
        dev_y,
        LABELS,
        network_dev_logits=network_dev_logits,
    )
    weight = details["weight"]
    if weight == 0:
        return None, None, network_dev_logits
    return lexical_model, details, network_dev_logits + weight * lexical_dev


def _blend_and_calibrate(args, train_rows, dev_rows, network_dev_logits):
    """Blend in the lexical model, then fit the temperature on dev.

    Returns ``(lexical model or None, its config entry, temperature, dev
    report)``; every training method ends with this.
    """
    lexical_model, lexical_config, dev_logits = _blend_lexical(
        args, train_rows, dev_rows, network_dev_logits
    )
    dev_y = np.array([LABEL_TO_INDEX[r[2]] for r in dev_rows])
    temperature = fit_temperature(dev_logits, dev_y)
    predicted, confidence = _predict(dev_logits, temperature)
    dev_report = score([r[2] for r in dev_rows], predicted, confidence)
    return lexical_model, lexical_config, temperature, dev_report


def _set_lexical(out, config, lexical_model, lexical_config):
    """Write or remove the lexical files and config entry of an artifact."""
    from classifier import artifact

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in artifact.LEXICAL_FILES:
        (out / name).unlink(missing_ok=True)
    if lexical_model is None:
        config.pop("lexical", None)
        return
    lexical_model.save(out)
    config["lexical"] = lexical_config


def _blend_main(args, train_rows, dev_rows):
    """Refit the lexical part of the artifact in --out over its network."""
    from classifier import artifact
    from classifier.engine import Engine

    if artifact.read_config(args.out)["training"].get("refit"):
        # Its network has seen dev, so dev can no longer choose a blend.
        raise SystemExit("blend: --out holds a model refitted on dev; run make train")
    engine = Engine(args.out, threads=args.threads)
    engine.lexical = None
    network_dev, _ = engine.logits([r[1] for r in dev_rows])
    lexical_model, lexical_config, temperature, dev_report = _blend_and_calibrate(
        args, train_rows, dev_rows, network_dev.numpy()
    )
    config = artifact.read_config(args.out)
    config["temperature"] = round(temperature, 6)
    config["parameters"] = _parameters(engine.model, lexical_model)
    config.setdefault("scores", {})["dev"] = dev_report
    config["scores"].pop("test", None)
    config["training"]["blend_command"] = _command(args)
    _set_lexical(args.out, config, lexical_model, lexical_config)
    artifact.write_config(args.out, config)
    card.write(args.out)
    version = artifact.artifact_version(args.out)
    print(json.dumps({"version": version, "dev": dev_report, "out": str(args.out)}))
    return 0


def _checkpoint_epoch(name):
    """Return the epoch a checkpoint name stands for: "epoch 0.5" -> 0.5."""
    return 0.0 if name == "start" else float(name.split()[1])


def _first_stage_epoch(first):
    """Return the epoch the first stage's kept checkpoint stands for."""
    if "best_checkpoint" in first:
        return _checkpoint_epoch(first["best_checkpoint"])
    # Artifacts of older code recorded the whole epoch under another name.
    return float(first.get("best_epoch", first["epochs"]))


def _train_again(rows, stage, stop, bf16, start=None):
    """Run one recorded stage again on ``rows``, up to epoch ``stop``.

    The first stage (no ``start``) is class-weighted, the refining one not,
    as in the stages that chose the settings.
    """
    from classifier.finetune import finetune

    return finetune(
        rows,
        None,
        epochs=stage["epochs"],
        batch_size=stage["batch_size"],
        lr=stage["learning_rate"],
        seed=SEED,
        max_length=MAX_LENGTH,
        start=start,
        class_weighted=start is None,
        bf16=bf16,
        stop_at_epoch=stop,
    )


def _refit_main(args, train_rows, dev_rows):
    """Train the model in --out again on train and dev, with dev's choices.

    Every setting comes from the artifact in --out, which the two stages
    chose on dev: the first stage's epochs and rate, the refining stage's
    rate and the checkpoint it kept (training stops there), the lexical
    model's strength, class weighting and blend weight, and the
    temperature. Dev rows then join the training data, so nothing is left
    to choose, and dev scores stop meaning anything: the artifact keeps
    the dev scores of the model it was refitted from, under
    ``training.chosen_on_dev``, and test.tsv is the only held-out score.
    """
    from classifier import artifact
    from classifier import lexical

    chosen = artifact.read_config(args.out)
    stages = chosen["training"]
    if stages.get("refit"):
        raise SystemExit("refit: --out already holds a refitted model")
    first = stages["first_stage"]
    rows = train_rows + dev_rows
    model, tokenizer, _, first_details = _train_again(
        rows, first, _first_stage_epoch(first), args.bf16
    )
    details = first_details
    stop = _checkpoint_epoch(stages["best_checkpoint"])
    if stop > 0:
        model, tokenizer, _, details = _train_again(
            rows, stages, stop, args.bf16, start=(model, tokenizer)
        )
    kept = ("base_model", "labels", "max_length", "normalize", "temperature")
    config = {key: chosen[key] for key in kept}
    lexical_model = None
    if "lexical" in chosen:
        settings = chosen["lexical"]
        lexical_model, fitted = lexical.fit_fixed(
            [r[1] for r in rows],
            np.array([LABEL_TO_INDEX[r[2]] for r in rows]),
            LABELS,
            c=settings["c"],
            class_weight=settings["class_weight"],
        )
        config["lexical"] = {**settings, **fitted}
    config["training"] = {
        **details,
        "refit": True,
        "command": _command(args),
        "seed": SEED,
        "train_rows": len(rows),
        "dev_rows": 0,
        "first_stage": first_details,
        "chosen_on_dev": {"training": stages, "scores": chosen.get("scores", {})},
    }
    config["scores"] = {}
    config["parameters"] = _parameters(model, lexical_model)
    _set_lexical(args.out, config, lexical_model, config.get("lexical"))
    version = model_lib.save_artifact(
        args.out, model, config, trainable_prefixes=("encoder.", "head.")
    )
    card.write(args.out)
    print(json.dumps({"version": version, "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
