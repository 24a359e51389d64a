"""Does the cell density of a slide change what the model finds? (sparse fields)

    python bench/bench_density.py [--size 1536] [--densities 1.0,0.5,0.15] [--tiles 512,1024]
                                  [--models compact,OTHER.pt] [--seeds 21,22]

Generates synthetic acquisitions (napari_hrs.synth, 0.325 µm/px) at several cell densities,
detects with each model at each tile size, and scores the hRS calls against the generator's
ground truth: recall (true hRS with an hRS call on them) and false hRS calls (on background or
another cell type). Flow-sorted samples are sparse or dense from one slide to the next, so a
model whose recall follows the density is not usable as is.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def score(result, truth_labels: np.ndarray, truth) -> tuple[int, int, int]:  # noqa: ANN001
    """(true hRS, found hRS, false hRS calls) of a detection result."""
    tb = result.table
    ys = tb["centroid_y_px"].round().astype(int).clip(0, truth_labels.shape[0] - 1)
    xs = tb["centroid_x_px"].round().astype(int).clip(0, truth_labels.shape[1] - 1)
    hit = truth_labels[ys, xs]
    called = tb["class_name"].to_numpy() == "round_spermatid"
    types = truth.set_index("label_id")["cell_type"]
    hrs = set(truth.loc[truth["cell_type"] == "round_spermatid", "label_id"])
    found = hrs & {int(h) for h in hit[called]}
    false = sum(1 for h in hit[called] if h == 0 or types.get(int(h)) != "round_spermatid")
    return len(hrs), len(found), false


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1536, help="acquisition side, pixels (1536)")
    p.add_argument("--densities", default="1.0,0.5,0.15", help="density scales")
    p.add_argument("--tiles", default="512,1024", help="tile sizes, model pixels")
    p.add_argument("--models", default="compact", help="model specs (compact or .pt paths)")
    p.add_argument("--seeds", default="21,22", help="acquisition seeds (summed over)")
    args = p.parse_args(argv)

    from napari_hrs.engine.checkpoint import load_model
    from napari_hrs.engine.detect import detect
    from napari_hrs.io import open_acquisition
    from napari_hrs.synth import generate_acquisition, read_ground_truth

    models = {m: load_model(m) for m in args.models.split(",")}
    print(f"{'model':<28} {'density':>7} {'tile':>5} {'hRS':>5} {'recall':>7} {'false hRS':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for dens in (float(v) for v in args.densities.split(",")):
            acqs = []
            for seed in (int(s) for s in args.seeds.split(",")):
                path = generate_acquisition(d / f"d{dens}_{seed}.ome.zarr", size=args.size,
                                            seed=seed, density=dens, chunk=512)  # fmt: skip
                labels, truth = read_ground_truth(path)
                acqs.append((path, np.asarray(labels), truth))
            for name, model in models.items():
                for tile in (int(t) for t in args.tiles.split(",")):
                    n = found = false = 0
                    for k, (path, labels, truth) in enumerate(acqs):
                        res = detect(open_acquisition(path), model, tile=tile, device="cpu",
                                     out=d / f"r_{k}_{dens}_{tile}.zarr", overwrite=True)  # fmt: skip
                        a, b, c = score(res, labels, truth)
                        n, found, false = n + a, found + b, false + c
                    print(f"{Path(name).name:<28} {dens:>7} {tile:>5} {n:>5} "
                          f"{found / max(n, 1):>7.2f} {false:>9}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
