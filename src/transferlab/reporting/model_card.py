"""MODEL_CARD.md: what a finished run is, in the Hugging Face model-card shape, filled only from what
the run recorded (summary.json, the config, the data plan), so the card can never disagree with it.

The card travels with the model (exports copy it), so it names no folder of the machine it ran on.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from transferlab.atomic import write_text
from transferlab.models.hub_presets import local_folder

if TYPE_CHECKING:
    from transferlab.config.schema import ExperimentConfig
    from transferlab.data.splits import DataPlan
    from transferlab.reporting.summary import RunSummary

CARD = "MODEL_CARD.md"
HUB_BASES = ("hub_text", "hub_image")


def write_model_card(summary: "RunSummary", cfg: "ExperimentConfig", plan: "DataPlan", run_dir: Path) -> Path:
    path = run_dir / CARD
    write_text(path, model_card(summary, cfg, plan))
    return path


def model_card(summary: "RunSummary", cfg: "ExperimentConfig", plan: "DataPlan") -> str:
    sections = [
        _front_matter(summary, cfg),
        f"# {cfg.name}: {cfg.base_model.name} fine-tuned on {cfg.dataset.name}\n",
        _model(summary, cfg),
        _data(summary, cfg, plan),
        _procedure(summary, cfg),
        _evaluation(summary),
        _limitations(summary, cfg),
        _provenance(summary, cfg),
    ]
    return "\n".join(sections)


def _front_matter(summary: "RunSummary", cfg: "ExperimentConfig") -> str:
    task = "image-classification" if cfg.dataset.kind == "images" else "text-classification"
    licence = base_licence(cfg)
    lines = ["---", "library_name: keras", "tags:", "- transferlab", "- transfer-learning", f"- {task}",
             f"base_model: {base_source(cfg)}", f"datasets:\n- {cfg.dataset.name}", "metrics:\n- accuracy"]
    if licence:
        lines.append(f"license: {licence.lower()}")
    return "\n".join([*lines, "---", ""])


def _model(summary: "RunSummary", cfg: "ExperimentConfig") -> str:
    head = cfg.head
    units = ", ".join(str(u) for u in head.hidden_units) or "none"
    inputs = "raw strings" if cfg.dataset.kind == "text" else "raw 0-255 RGB pixels"
    return "\n".join([
        "## Model", "",
        f"- **Base:** {base_source(cfg)}; licence: {base_licence(cfg) or 'not recorded, check the base source'}",
        f"- **Head:** {head.kind.value} (pooling {head.pooling.value}, hidden units {units}, dropout {head.dropout})",
        f"- **Input:** {inputs}; **output:** logits over {len(summary.class_names)} classes "
        f"({', '.join(summary.class_names)})", "",
    ])


def _data(summary: "RunSummary", cfg: "ExperimentConfig", plan: "DataPlan") -> str:
    rows = ["| split | examples | per class |", "|---|---|---|"]
    for split in ("train", "validation", "test"):
        counts = Counter(getattr(plan, split).labels)
        per_class = ", ".join(f"{name} {counts.get(i, 0)}" for i, name in enumerate(summary.class_names))
        rows.append(f"| {split} | {summary.counts[split]} | {per_class} |")
    if summary.skipped_files:
        rows += ["", f"{len(summary.skipped_files)} unreadable examples were left out."]
    return "\n".join(["## Training data", "", f"Dataset `{cfg.dataset.name}` ({cfg.dataset.kind.value}), "
                      f"split with seed {summary.seed}; data fingerprint `{summary.data_fingerprint}`.", "", *rows, ""])


def _procedure(summary: "RunSummary", cfg: "ExperimentConfig") -> str:
    rows = ["| phase | epochs run | learning rate | warmup, decay | trains | trainable parameters | best epoch | wall time |",
            "|---|---|---|---|---|---|---|---|"]
    for name, phase in summary.phases.items():
        settings = getattr(cfg.schedule, name)
        trains = _what_trains(cfg) if name == "fine_tune" else _head_training(phase)
        rows.append(f"| {name} | {phase['epochs_run']} of {settings.epochs} | {phase['lr']:g} | {settings.warmup:g}, "
                    f"{settings.decay.value} | {trains} | {phase['trainable_params']:,} | {phase['best_epoch']} | "
                    f"{phase['wall_time_s']:.1f} s |")
    opt = cfg.optimizer
    decay = f"weight decay {opt.weight_decay:g}" if opt.weight_decay else "no weight decay"
    origin = summary.model_from
    where = f" (epoch {origin['epoch']}, {origin['phase']} phase)" if origin else ""
    return "\n".join(["## Training procedure", "", *rows, "",
                      f"Optimizer {opt.name.value} ({decay}), batch size {cfg.dataset.batch_size}, early stopping "
                      f"and best model on `{cfg.schedule.monitor}`, seed {summary.seed}. `model.keras` and `best.keras` "
                      f"are the run's best epoch{where}, which the test metrics below measure.", ""])


def _head_training(phase: dict) -> str:
    if phase.get("solver") == "lbfgs":
        return f"the head (base frozen), solved by L-BFGS, C={phase['solver_C']:g}"
    return "the head (base frozen)"


def _what_trains(cfg: "ExperimentConfig") -> str:
    fine = cfg.schedule.fine_tune
    if fine.lora_rank is not None:
        return f"LoRA adapters of rank {fine.lora_rank} and the head"
    return "the whole base and the head" if fine.unfreeze == "all" else f"the base from `{fine.unfreeze}` up, and the head"


def _evaluation(summary: "RunSummary") -> str:
    metrics = summary.metrics
    lines = ["## Evaluation", "", "On the held-out test split:", "", "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {value:.4f} |" for key, value in metrics.items()
              if key.startswith(("test/", "baseline/", "head/test_"))]
    if summary.confusion_matrix:
        names = summary.class_names
        lines += ["", "Confusion matrix (rows: true class, columns: predicted):", "",
                  "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(str(n) for n in row) + " |" for name, row in zip(names, summary.confusion_matrix)]
    return "\n".join([*lines, "", *_against_baselines(metrics), ""])


def _against_baselines(metrics: dict[str, float]) -> list[str]:
    ours = metrics.get("test/accuracy")
    named = {"baseline/test_accuracy": "logistic regression on the frozen base's features",
             "baseline/tfidf_test_accuracy": "TF-IDF + logistic regression on the raw texts"}
    if ours is None:
        return []
    return [f"- Against {what}: {metrics[key]:.4f}, {'beaten' if ours > metrics[key] else 'not beaten'} "
            f"({ours - metrics[key]:+.4f})." for key, what in named.items() if key in metrics]


def _limitations(summary: "RunSummary", cfg: "ExperimentConfig") -> str:
    total = sum(summary.counts.values())
    return "\n".join([
        "## Intended use and limitations", "",
        f"Classifies {cfg.dataset.kind.value} into the {len(summary.class_names)} classes above, for inputs like "
        f"those of `{cfg.dataset.name}`. It was trained and tested on {total} examples of that one source; its "
        "accuracy on other sources (another site, camera, language or period) was not measured, and the "
        "test split is small enough that its accuracy has a wide confidence interval. The base brings what "
        "its pretraining data holds, biases included.", "",
    ])


def _provenance(summary: "RunSummary", cfg: "ExperimentConfig") -> str:
    env = summary.environment
    git = env.get("git") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items())
    commit = f"{git.get('commit', 'unknown')}{' (with uncommitted changes, see git.diff)' if git.get('dirty') else ''}"
    return "\n".join(["## Provenance", "", f"- **Code:** transferlab, commit {commit}",
                      f"- **Overrides:** `{' '.join(_portable_override(o) for o in env.get('overrides') or []) or 'none'}`",
                      f"- **Versions:** Python {env.get('python')}, {versions}",
                      f"- **Data fingerprint:** `{summary.data_fingerprint}`, seed {summary.seed}",
                      f"- **Wall time:** {summary.wall_time_s:.1f} s", ""])


def base_source(cfg: "ExperimentConfig") -> str:
    """Where the base's weights came from, without a path of this machine."""
    base = cfg.base_model
    if base.name in HUB_BASES:
        return f"KerasHub preset {_portable(base.preset)}"
    if base.path or base.url:
        return f"{base.name} vectors ({_portable(base.url or base.path)})"
    if not base.weights:
        return f"{base.name} (random initialisation)"
    return f"{base.name} ({'its default' if base.weights == 'default' else _portable(base.weights)} weights)"


def base_licence(cfg: "ExperimentConfig") -> Optional[str]:
    """The configured licence, else the one a local preset's README front matter declares."""
    if cfg.base_model.license:
        return cfg.base_model.license
    folder = local_folder(cfg.base_model.preset) if cfg.base_model.name in HUB_BASES and cfg.base_model.preset else None
    if folder is None:
        return None
    try:
        found = re.search(r"^license:\s*(\S+)", (folder / "README.md").read_text(errors="replace")[:4000], re.M)
    except OSError:
        return None
    return found.group(1) if found else None


def _portable_override(override: str) -> str:
    key, equals, value = override.partition("=")
    return f"{key}={_portable(value)}" if equals and value.startswith(("/", "~", "file://")) else override


def _portable(handle: Optional[str]) -> str:
    """A URL or preset name as is; a local path by its last part only."""
    if not handle:
        return "none"
    return handle if "://" in handle and not handle.startswith("file://") or "/" not in handle else Path(handle).name
