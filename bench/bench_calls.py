"""How right are the PRM1 / PNA calls? The demo path against a synthetic acquisition's truth.

    python bench/bench_calls.py                          # the bundled sample
    python bench/bench_calls.py /tmp/s.ome.zarr          # any acquisition from napari_hrs.synth

Runs the pipeline (bundled model, detection + quantification) into a temporary folder, finds
for each detection the true cell under most of its mask, keeps the detections called hRS that
sit on a true hRS, and reports, for each Otsu scale, the share of PRM1 / PNA calls that match
the generator's truth and the paper's statistic (fraction PRM1+ and/or PNA+) against the true
one. Calls are made over all detections, as the pipeline makes them.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def true_cell_under(det: np.ndarray, truth: np.ndarray) -> dict[int, int]:
    """Detection id -> the ground-truth id covering most of its pixels (0: background only)."""
    m = det > 0
    pairs, counts = np.unique(np.stack([det[m], truth[m]], 1), axis=0, return_counts=True)
    best: dict[int, tuple[int, int]] = {}
    for (d, g), n in zip(pairs, counts, strict=True):
        if g and n > best.get(int(d), (0, 0))[1]:
            best[int(d)] = (int(g), int(n))
    return {d: g for d, (g, _) in best.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("acquisition", nargs="?", default=None, help="default: the bundled sample")
    args = p.parse_args(argv)

    from napari_hrs.markers import OTSU_SCALES, call_markers, summarize
    from napari_hrs.pipeline import run_pipeline_on_sample
    from napari_hrs.synth import read_ground_truth
    from napari_hrs.synth.sample import sample_path

    path = args.acquisition or str(sample_path())
    res = run_pipeline_on_sample(path)
    gt, truth = read_ground_truth(path)
    gt = np.asarray(gt)
    gt = gt.reshape(gt.shape[-2:])
    under = true_cell_under(np.asarray(res.detection.labels), gt)
    cells = res.cells.assign(true_id=[under.get(int(i), 0) for i in res.cells["label_id"]])
    t = truth.set_index("label_id")
    true_hrs = t.index[t["cell_type"] == "round_spermatid"]
    keep = cells["class_name"].isin(["round_spermatid", "hRS"]) & cells["true_id"].isin(true_hrs)
    want = t.loc[cells.loc[keep, "true_id"]]
    true_stat = float((want["PRM1_positive"].to_numpy() | want["PNA_positive"].to_numpy()).mean())
    print(f"{path}: {int(keep.sum())} detected hRS on a true hRS ({len(cells)} detections)")
    for scale in OTSU_SCALES:
        called = call_markers(cells, "otsu", otsu_scale=scale)[keep]
        right = {
            m: float((called[f"{m}_positive"].to_numpy() == want[f"{m}_positive"].to_numpy()).mean())
            for m in ("PRM1", "PNA")
        }
        stat = summarize(called)["fraction_marker_positive"]
        print(
            f"  otsu {scale:6s}: PRM1 calls right {right['PRM1']:.1%}, PNA {right['PNA']:.1%}; "
            f"statistic {stat:.1%} (true {true_stat:.1%})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
