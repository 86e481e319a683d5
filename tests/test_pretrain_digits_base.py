"""The script that makes the shipped digits base still runs end to end and writes weights the base loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pretrain_digits_base.py"


def test_pretraining_one_epoch_writes_trained_weights_the_digits_base_loads(tmp_path):
    import keras

    from transferlab.models.digits import digits_cnn

    output = tmp_path / "base.weights.h5"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--epochs", "1", "--data-dir", str(tmp_path / "data"), "--output", str(output)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"wrote {output}" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.weights.h5", "data"]  # no temporary file left
    accuracy = float(done.stdout.split("validation accuracy ")[1].split(";")[0])
    assert 0.0 <= accuracy <= 1.0

    keras.utils.set_random_seed(0)
    fresh = digits_cnn(input_shape=(32, 32, 3))
    untrained = [w.copy() for w in fresh.get_weights()]
    fresh.load_weights(output)
    changed = [not np.allclose(a, b) for a, b in zip(untrained, fresh.get_weights())]
    assert sum(changed) > len(changed) // 2  # one epoch moved most of the base's weights
