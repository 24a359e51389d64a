"""Otsu on the log scale vs the linear scale, on simulated per-cell marker values.

    python bench/bench_otsu_scales.py [--reps 20]

Negatives: N(0, 4) (background-subtracted means of unstained cells); positives: log-normal
around 120 (sigma 0.6, spread by staining and expression); optionally a few debris at ~60000.
Prints, per scenario, the mean and the worst share of calls that match the truth over
``--reps`` draws, for :func:`napari_hrs.markers.call_positive` with ``otsu_scale="log"``
(default) and ``"linear"``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

SCENARIOS = {  # name: (negatives, positives, debris)
    "mostly positive (85 %)": (30, 170, 0),
    "mostly positive + 1 debris": (30, 170, 1),
    "mostly positive + 3 debris (1.5 %)": (30, 170, 3),
    "half positive": (100, 100, 0),
    "half positive + 4 debris": (100, 100, 4),
    "10 % positive": (180, 20, 0),
    "3 % positive": (194, 6, 0),
    "1.5 % positive": (197, 3, 0),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args(argv)

    from napari_hrs.markers import call_positive

    rng = np.random.default_rng(args.seed)
    print(f"{'scenario':36s} {'log: mean / worst':>18s} {'linear: mean / worst':>22s}")
    for name, (n_neg, n_pos, n_debris) in SCENARIOS.items():
        right: dict[str, list[float]] = {"log": [], "linear": []}
        for _ in range(args.reps):
            values = np.r_[
                rng.normal(0.0, 4.0, n_neg),
                np.exp(rng.normal(np.log(120.0), 0.6, n_pos)),
                rng.uniform(50000.0, 70000.0, n_debris),
            ]
            truth = np.r_[np.zeros(n_neg, bool), np.ones(n_pos + n_debris, bool)]
            table = pd.DataFrame({"M_mean": values, "M_mean_bgsub": values})
            for scale in right:
                calls, _ = call_positive(table, "M", "otsu", otsu_scale=scale)
                right[scale].append(float((calls.to_numpy() == truth).mean()))
        cols = [f"{np.mean(v):.1%} / {np.min(v):.1%}" for v in right.values()]
        print(f"{name:36s} {cols[0]:>18s} {cols[1]:>22s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
