"""The extract command: the frozen base's features of every split written to disk, with the baseline's scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omegaconf import DictConfig

from transferlab.atomic import write_json
from transferlab.config.schema import ExperimentConfig
from transferlab.training.model import (
    build_classifier,
    build_data,
    feature_store,
    load_word_vectors,
    task_spec,
)
from transferlab.training.run_guard import release
from transferlab.training.setup import checked_setup

if TYPE_CHECKING:

    pass


def extract_features(cfg: ExperimentConfig | DictConfig) -> dict[str, object]:
    """Feature extraction, the second use of a pretrained model: the frozen base run once over every
    split, its pooled features saved (features.npz or features.parquet), and the scikit-learn baseline
    fitted on them."""
    from transferlab.compat.tensorflow import import_tensorflow
    from transferlab.features.baseline import score_baseline
    from transferlab.features.export import export_features
    from transferlab.repro import seed_everything

    cfg, image_size, plan, run_dir = checked_setup(cfg)
    try:
        import_tensorflow()
        seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
        data = build_data(cfg, plan, image_size)
        model = build_classifier(cfg, data, task_spec(cfg, data, image_size), load_word_vectors(cfg, data))
        arrays, path = export_features(feature_store(cfg, model, data), run_dir, cfg.extract.format)
        fit = cfg.baseline.estimator and "x_test" in arrays
        result = {
            "features": str(path),
            "counts": {key[2:]: len(value) for key, value in arrays.items() if key.startswith("y_")},
            # The baseline reuses the exported features: the base runs over each split once.
            "metrics": score_baseline(cfg.baseline, *(arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")))
            if fit else {},
        }
        write_json(result, run_dir / "extraction.json")
        return result
    finally:
        release(run_dir)
