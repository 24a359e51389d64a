"""Benchmark tiled whole-image detection: tiling overhead and peak memory vs image size.

    python bench/bench_tiling.py --model fake --size 8192                  # fake disc model
    python bench/bench_tiling.py --model compact --size 4096 --tile 1024   # real compact model
    python bench/bench_tiling.py --model fake --rss 8192,16384             # peak RSS vs size

Measured on a synthetic acquisition (:func:`napari_hrs.synth.generate_acquisition`, written
once into ``--workdir``):

- ``detect``: the whole :func:`napari_hrs.engine.detect.detect` run (read, normalise, predict,
  stitch, write labels + table) -> tiles/s and Mpixel/s;
- ``loop``: a plain loop over the *same* tiles and batches calling ``Predictor.predict`` only,
  with the tiles already in memory (their reading is not timed);
- ``overhead`` = detect / loop - 1: what tiling, I/O, stitching and writing cost on top of the
  model (goal <= 10 %); also detect's wall time over its own time in ``Predictor.predict``,
  which is less noisy on a busy machine;
- with ``--rss``, each size runs ``detect`` in a fresh process and reports its peak RSS
  (``ru_maxrss``) and its RSS after loading the model; the goal is a flat peak.

``--model``: ``fake`` (threshold + connected components, tests/_engine_fakes.py), ``compact``
(the bundled weights, or random weights when they are absent: fine for timing), or a
checkpoint path. Keep runs short on shared machines (``--size 4096``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _model(spec: str):
    if spec == "fake":
        sys.path.insert(0, str(ROOT / "tests"))
        from _engine_fakes import FakeConfig, FakeDiscModel

        return FakeDiscModel(FakeConfig(pixel_size_um=None, max_object_size_px=64)), "fake"
    from napari_hrs.errors import HRSError

    try:
        from napari_hrs.engine.checkpoint import load_model

        return load_model(spec), spec
    except (HRSError, FileNotFoundError) as exc:
        if spec != "compact":
            raise
        from napari_hrs.engine.config import get_preset
        from napari_hrs.engine.model import build_model

        print(f"bundled weights unavailable ({exc}); random weights", file=sys.stderr)
        import torch

        torch.manual_seed(0)
        return build_model(get_preset("compact")), "compact (random weights)"


def acquisition_path(workdir: Path, size: int, seed: int) -> Path:
    """The synthetic acquisition of ``size`` x ``size`` pixels (generated once)."""
    path = workdir / f"bench_tiling_{size}_s{seed}.ome.zarr"
    if not path.exists():
        from napari_hrs.synth import generate_acquisition

        t = time.perf_counter()
        generate_acquisition(path, size=size, seed=seed)
        print(f"generated {path} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_detect(path: Path, args: argparse.Namespace, out: Path) -> dict:
    from napari_hrs.engine.detect import detect
    from napari_hrs.engine.predictor import Predictor
    from napari_hrs.io import open_acquisition

    model, name = _model(args.model)
    predictor = Predictor(model, device=args.device, score_threshold=args.score_threshold,
                          batch_size=args.batch, max_detections=100)  # fmt: skip
    acq = open_acquisition(path)
    rss_model = _rss_mb()
    t = time.perf_counter()
    res = detect(acq, predictor, tile=args.tile, out=out, overwrite=True)
    wall = time.perf_counter() - t
    return {"model": name, "wall_s": wall, "instances": len(res.table), "meta": res.metadata,
            "rss_after_model_mb": rss_model, "peak_rss_mb": _rss_mb(), "predictor": predictor,
            "acq": acq}  # fmt: skip


def run_loop(predictor, acq, meta: dict) -> float:
    """Predict the same tiles, batch by batch, with reading excluded from the timing."""
    from napari_hrs.engine.intensity import IntensityRange
    from napari_hrs.engine.tile_io import resize
    from napari_hrs.engine.tiling import TileGrid

    p = meta["parameters"]
    rng = IntensityRange(p["intensity"]["low"], p["intensity"]["high"])
    chan = acq.channel("brightfield", meta["source"]["level"])
    grid = TileGrid(tuple(meta["source"]["shape"]), p["tile_image_px"], p["overlap_image_px"])
    total = 0.0
    for i in range(0, len(grid), predictor.batch_size):
        images = []
        for t in grid.tiles[i : i + predictor.batch_size]:
            img = rng.apply(chan[t.y0 : t.y1, t.x0 : t.x1].compute())
            images.append(resize(img, p["scale"]) if p["scale"] != 1.0 else img)
        t0 = time.perf_counter()
        predictor.predict(images)
        total += time.perf_counter() - t0
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="fake", help="fake, compact or a checkpoint path")
    ap.add_argument("--size", type=int, default=8192, help="image edge in pixels (8192)")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default=None)
    ap.add_argument("--score-threshold", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs (detect and loop)")
    ap.add_argument(
        "--rss", default=None, help="sizes for the peak-RSS comparison, e.g. 8192,16384"
    )
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "napari_hrs_bench"))
    ap.add_argument("--json", action="store_true", help="(internal) print one JSON line")
    args = ap.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    if args.rss:
        sizes = [int(s) for s in args.rss.split(",")]
        for s in sizes:
            acquisition_path(workdir, s, args.seed)  # generate outside the measured process
        print(f"peak RSS, model {args.model}, tile {args.tile}, batch {args.batch}")
        for s in sizes:
            cmd = [sys.executable, __file__, "--json", "--model", args.model, "--size", str(s),
                   "--tile", str(args.tile), "--batch", str(args.batch), "--workdir", str(workdir),
                   "--score-threshold", str(args.score_threshold), "--seed", str(args.seed)]  # fmt: skip
            if args.device:
                cmd += ["--device", args.device]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(line.strip().splitlines()[-1])
            print(f"  {s:6d}^2: {r['tiles']:4d} tiles, {r['wall_s']:7.1f} s, peak RSS "
                  f"{r['peak_rss_mb']:7.0f} MB (after model load {r['rss_after_model_mb']:.0f} MB), "
                  f"{r['instances']} instances")  # fmt: skip
        return 0

    path = acquisition_path(workdir, args.size, args.seed)
    out = workdir / f"result_{args.size}.zarr"
    r = run_detect(path, args, out)
    for _ in range(args.repeat - 1):  # best of --repeat (the model is loaded once per run)
        again = run_detect(path, args, out)
        r = again if again["wall_s"] < r["wall_s"] else r
    meta = r["meta"]
    if args.json:
        print(json.dumps({"tiles": meta["tiles_total"], "wall_s": r["wall_s"],
                          "peak_rss_mb": r["peak_rss_mb"], "instances": r["instances"],
                          "rss_after_model_mb": r["rss_after_model_mb"]}))  # fmt: skip
        return 0
    loop = min(run_loop(r["predictor"], r["acq"], meta) for _ in range(args.repeat))
    n = meta["tiles_total"]
    mpx = args.size**2 / 1e6
    print(f"model {r['model']}, {args.size}^2 px, tile {args.tile} (overlap "
          f"{meta['parameters']['overlap']}), batch {args.batch}, {n} tiles, device "
          f"{meta['model']['device']}, {r['instances']} instances")  # fmt: skip
    print(
        f"  detect: {r['wall_s']:8.2f} s  {n / r['wall_s']:6.2f} tiles/s  {mpx / r['wall_s']:6.2f} Mpx/s"
    )
    print(f"  loop  : {loop:8.2f} s  {n / loop:6.2f} tiles/s  (predict only, same tiles)")
    inside = 100 * (r["wall_s"] / meta["timing"]["predict_s"] - 1)
    print(
        f"  overhead of tiling + I/O + stitching + writing: {100 * (r['wall_s'] / loop - 1):+.1f} %"
        f" vs the loop; {inside:+.1f} % outside the model within the detect run"
    )
    print(f"  detect split: {json.dumps(meta['timing'])}")
    print(f"  peak RSS {r['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
