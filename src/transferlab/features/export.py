"""Writing extracted features to disk (NumPy or Parquet) with their items and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from transferlab.config.schema import FeaturesFormat
from transferlab.features.store import FeatureStore, pooled


def export_features(
    store: FeatureStore, folder: Path, fmt: FeaturesFormat, item: str
) -> tuple[dict[str, np.ndarray], Path]:
    """Pooled base features and labels of every split (`x_train`, `y_train`, ...), saved in `folder` as
    features.npz or features.parquet beside what each row came from, in the column `item`
    (the image's path, the text)."""
    arrays, items = {}, {}
    for split in ("train", "validation", "test"):
        if store.batches(split) is None:
            continue
        features, labels = store.get(split)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = pooled(features), labels
        items[split] = getattr(store.data.plan, split).items
    class_names = store.data.class_names
    path = folder / f"features.{fmt.value}"
    if fmt is FeaturesFormat.parquet:
        _features_table(arrays, items, class_names, item).to_parquet(path)
    else:
        np.savez(path, class_names=np.array(class_names), **arrays, **{f"items_{k}": np.array(v) for k, v in items.items()})
    return arrays, path


def _features_table(arrays: dict[str, np.ndarray], items: dict[str, list], class_names: list[str], source: str):
    """One row per image or text: split, source, label, class, then one float column per feature."""
    import pandas as pd

    tables = []
    for split, sources in items.items():
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        meta = pd.DataFrame({"split": split, source: sources, "label": y, "class": [class_names[i] for i in y]})
        tables.append(pd.concat([meta, pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])], axis=1))
    return pd.concat(tables, ignore_index=True)
