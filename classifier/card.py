"""The model card written beside the weights (``MODEL_CARD.md``)."""

from pathlib import Path

from classifier.artifact import CARD_FILE
from classifier.artifact import artifact_version
from classifier.artifact import read_config

_TERMS = (
    "HumAID v1.0 (Alam et al., ICWSM 2021) is licensed for research on "
    "humanitarian computing only; its contents must be kept confidential "
    "(tweet ids may be shared) and deleted on request or when the research "
    "ends. The data is read from `../shared/data/humaid` at training time "
    "and is not copied into this repository; only weights derived from it "
    "are shipped. Anyone running this model in a service must make sure "
    "that use is covered by those terms."
)


def _score_table(report):
    lines = ["| class | F1 |", "| --- | --- |"]
    for label, value in report["per_class_f1"].items():
        lines.append(f"| {label} | {value:.4f} |")
    return "\n".join(lines)


def _lexical_section(lexical, fitted_on):
    if not lexical:
        return []
    # Artifacts made before the class weighting was a choice were balanced.
    weighting = lexical.get("class_weight", "balanced")
    weighting = "class-balanced" if weighting == "balanced" else "unweighted"
    return [
        "## Lexical model",
        "",
        "A TF-IDF model over lower-cased words and word pairs "
        f"({lexical['features']} features, multinomial logistic regression, "
        f"C={lexical['c']}, {weighting}) is fitted on {fitted_on}; its logits "
        f"are added to the network's with weight {lexical['weight']}, chosen "
        "on dev.tsv, before the temperature is applied "
        "(`classifier/lexical.py`).",
        "",
    ]


def _stages(training):
    """Describe a two-stage training (finetune, then refine), if it was one."""
    first = training.get("first_stage")
    if not first:
        return []
    if training.get("refit"):
        return _refit_stages(training)
    return [
        "Trained in two stages, each run by the command given; `make train` "
        "runs both, in order, with the fixed seed:",
        "",
        f"1. `{first.get('command')}`: {first.get('method')}, "
        f"{first.get('epochs')} epochs at learning rate "
        f"{first.get('learning_rate')}, best checkpoint on dev: "
        f"{first.get('best_checkpoint', first.get('best_epoch'))}.",
        f"2. `{training.get('command')}`: the network of stage 1 trained on "
        f"with {training.get('method')}, {training.get('epochs')} epoch(s) at "
        f"learning rate {training.get('learning_rate')}, scored on dev every "
        "half epoch (and before it began); best checkpoint on dev: "
        f"{training.get('best_checkpoint')}.",
        "",
    ]


def _refit_stages(training):
    """Describe a model trained again on train and dev with dev's choices."""
    chosen = training["chosen_on_dev"]
    dev = chosen["scores"].get("dev")
    lines = [
        "Trained in three steps; `make train` runs them in order, with the fixed seed:",
        "",
        f"1. `{chosen['training']['first_stage'].get('command')}`, then",
        f"2. `{chosen['training'].get('command')}`: the two stages that chose, "
        "on dev.tsv, the first stage's epochs, the refining stage's checkpoint "
        f"({chosen['training'].get('best_checkpoint')}), the lexical model's "
        "settings and blend weight, and the temperature.",
        f"3. `{training.get('command')}`: both stages run again on train.tsv "
        "and dev.tsv together with those settings, stopping where dev chose; "
        "the lexical model is refitted on both files the same way. These are "
        "the weights shipped.",
        "",
    ]
    if dev:
        lines += [
            "The model of step 2, before the refit, scored on dev.tsv: "
            f"weighted F1 {dev['weighted_f1']}, macro F1 {dev['macro_f1']}, "
            f"ece {dev['ece']}. The shipped model has seen dev.tsv, so test.tsv "
            "is its only held-out score.",
            "",
        ]
    return lines


def render(config, version):
    """Return the card's Markdown for an artifact's config."""
    training = config.get("training", {})
    scores = config.get("scores", {})
    refit = training.get("refit", False)
    parts = [
        f"# Model card: {version}",
        "",
        "Classifies a crisis message into one of the ten HumAID humanitarian "
        "categories. The confidence is a temperature-calibrated softmax "
        "probability; results under the service's review threshold are "
        "marked `needs_review`.",
        "",
        "## Base model",
        "",
        "all-MiniLM-L6-v2 (BERT, 6 layers, hidden size 384, uncased), as "
        f"carried by the package `{config.get('base_model')}` (package licence "
        "MIT; the weights themselves are under Apache-2.0). Loaded from disk "
        "with the Hugging Face offline switches on; nothing is downloaded. "
        f"Parameters in all (network, head and any lexical model): "
        f"{config.get('parameters', 'unknown')}.",
        "",
        *_lexical_section(
            config.get("lexical"),
            "train.tsv and dev.tsv" if refit else "train.tsv",
        ),
        "## Data and terms of use",
        "",
        _TERMS,
        "",
        "## Training",
        "",
        f"- method: {training.get('method')}",
        f"- seed: {training.get('seed')}",
        (
            f"- rows: train and dev together {training.get('train_rows')}"
            if refit
            else f"- rows: train {training.get('train_rows')}, "
            f"dev {training.get('dev_rows')}"
        ),
        f"- maximum length: {config['max_length']} tokens (longer texts are cut "
        "and marked `truncated`)",
        f"- calibration: softmax temperature {config['temperature']} fitted on dev"
        + (" (for the model of step 2 below)" if refit else ""),
        "- settings: "
        + ", ".join(
            f"{k}={v}"
            for k, v in sorted(training.items())
            if k not in ("first_stage", "chosen_on_dev")
        ),
        "",
        *_stages(training),
        (
            "Every setting was chosen on dev.tsv. test.tsv decided one thing: "
            "refitted weights replace the earlier ones only when they score "
            "better there (these did, once run). Otherwise it is used to report."
            if refit
            else "The model was chosen on dev.tsv; test.tsv was used only to report."
        ),
        f"Command: `{training.get('command', 'python -m classifier.train')}`.",
    ]
    for split in ("dev", "test"):
        report = scores.get(split)
        if not report:
            continue
        parts += [
            "",
            f"## Scores on {split}.tsv (n={report['n']})",
            "",
            f"accuracy {report['accuracy']}, weighted F1 {report['weighted_f1']}, "
            f"macro F1 {report['macro_f1']}, expected calibration error "
            f"{report['ece']}",
            "",
            _score_table(report),
        ]
    return "\n".join(parts) + "\n"


def write(artifact_dir):
    """Render the card from the artifact's config and write it beside it."""
    config = read_config(artifact_dir)
    text = render(config, artifact_version(artifact_dir))
    (Path(artifact_dir) / CARD_FILE).write_text(text, "utf-8")
    return text
