"""bench/bench_engine.py's FLOP count and device record (what the GPU run reports)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_engine", ROOT / "bench" / "bench_engine.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_engine"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_flops_grow_with_the_image_and_rows_say_the_device():
    from napari_hrs.engine.checkpoint import load_model
    from napari_hrs.engine.predictor import Predictor

    bench = _bench()
    pred = Predictor(load_model("compact"), device="cpu", batch_size=1)
    rng = np.random.default_rng(0)
    small, big = (rng.random((1, s, s), np.float32) for s in (128, 256))
    f_small = bench.count_flops(pred, [small[0]])
    f_big = bench.count_flops(pred, [big[0]])
    # the backbone and FPN grow with the area; the RoI heads add a part that does not
    assert 1e8 < f_small < f_big < 4 * f_small
    assert bench.count_flops(pred, [big[0]]) == f_big  # a count, not a timing
    info = bench.device_info("cpu", pred)
    assert info["amp_fp16"] is False and "device_name" not in info and info["torch"]
