"""Feature extraction, the second use of a pretrained model: the frozen base run once over every split,
its pooled features saved, and the scikit-learn baseline fitted on them (`transferlab extract`)."""

from __future__ import annotations

from omegaconf import DictConfig

from transferlab.atomic import write_json
from transferlab.config.convert import to_experiment_config
from transferlab.config.schema import ExperimentConfig
from transferlab.training.run_guard import release
from transferlab.training.setup import Setup, checked_setup


def extract_features(cfg: ExperimentConfig | DictConfig) -> dict[str, object]:
    """features.npz or features.parquet of every split, and the baseline's scores, in the run folder."""
    from transferlab.compat.tensorflow import import_tensorflow

    cfg = to_experiment_config(cfg)
    setup = checked_setup(cfg)  # settings, data and run folder checked before TensorFlow starts
    try:
        import_tensorflow()
        return _extract(cfg, setup)
    finally:
        release(setup.run_dir)


def _extract(cfg: ExperimentConfig, setup: Setup) -> dict[str, object]:
    from transferlab.features.baseline import score_baseline
    from transferlab.features.export import export_features
    from transferlab.features.store import feature_store
    from transferlab.repro import seed_everything

    modality, run_dir = setup.modality, setup.run_dir
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    data = modality.pipelines(cfg, setup.plan)
    model = modality.classifier(cfg, data).build()
    store = feature_store(model, data, modality.feature_folder(cfg), cfg.base_model)
    arrays, path = export_features(store, run_dir, cfg.extract.format, modality.item)
    fit = cfg.baseline.estimator and "x_test" in arrays
    result = {
        "features": str(path),
        "counts": {key[2:]: len(value) for key, value in arrays.items() if key.startswith("y_")},
        # The baseline reuses the exported features: the base runs over each split once.
        "metrics": {**score_baseline(cfg.baseline, {key[2:]: (x, arrays[f"y_{key[2:]}"]) for key, x in arrays.items()
                                                    if key.startswith("x_")}),
                    **modality.input_baselines(setup.plan)} if fit else {},
    }
    write_json(result, run_dir / "extraction.json")
    return result
