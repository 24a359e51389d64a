"""Benchmark the detection engine: megapixels per second of model input, ours vs detectron2.

    python bench/bench_engine.py                              # both presets, CPU
    python bench/bench_engine.py --preset compact --size 512 --images 8 --batch 4
    python bench/bench_engine.py --preset paper --size 800 --images 4 --device cuda

For each preset the same weights (the bundled model for ``compact``; seeded random weights
for ``paper``, FrozenBN statistics calibrated on an image as trained weights have them, the
foreground bias raised so detections pass and the mask head runs) run
on the same images (crops of the sample acquisition, tiled to ``--size``):

- ``native``: our :class:`~napari_hrs.engine.predictor.Predictor` with its defaults
  (channels-last, FrozenBN folded into the convolutions), ``--batch`` images per call;
- ``native-1``: ours, one image per call;
- ``detectron2``: detectron2's own ``GeneralizedRCNN`` built from the same config, one image
  per call, as its ``DefaultPredictor`` runs (when detectron2 is importable);
- ``detectron2-batched``: detectron2's model fed ``--batch`` images per call.

Rounds alternate between the engines (ours, theirs, ours, ...) so that load from other
processes hits both alike; the best of ``--repeat`` rounds is reported with the median.
Detections are compared too (count, box IoU, score difference): speed only counts with the
same detections. Prints one JSON line per engine and a ratio line.

``--flops`` also counts the floating-point operations of one forward pass per image
(convolutions and matrix products, :class:`torch.utils.flop_counter.FlopCounterMode`; ROIAlign
and NMS are not counted) and reports TFLOP/s per engine; with ``--peak-tflops P`` (the device's
dense fp16 peak, e.g. from its data sheet) also the fraction of it. Each row records the device
name, whether fp16 autocast ran (on CUDA by default) and the torch / CUDA versions. On a GPU:

    python bench/bench_engine.py --preset paper --device cuda --images 16 --batch 8 --flops \
        --peak-tflops 989
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def images(n: int, size: int, channels: int) -> list[np.ndarray]:
    from napari_hrs.engine.intensity import estimate_range
    from napari_hrs.io import open_acquisition
    from napari_hrs.synth.sample import sample_path

    bf = np.asarray(open_acquisition(sample_path()).channel("brightfield"), np.float32)
    img = estimate_range(bf).apply(bf)
    reps = -(-size // img.shape[0]) + 1
    big = np.tile(img, (reps, reps))
    out = []
    for k in range(n):
        y, x = (137 * k) % (big.shape[0] - size), (251 * k) % (big.shape[1] - size)
        crop = np.ascontiguousarray(big[y : y + size, x : x + size])
        out.append(np.stack([crop] * 3) if channels == 3 else crop)
    return out


def model(preset: str):
    import torch

    from napari_hrs.engine.checkpoint import Loaded, load_model
    from napari_hrs.engine.config import get_preset
    from napari_hrs.engine.model import build_model

    if preset == "compact":
        return load_model("compact")
    torch.manual_seed(0)
    cfg = get_preset("paper")
    m = build_model(cfg).eval()
    sys.path.insert(0, str(ROOT / "tests"))
    from _engine_model_helpers import calibrate_frozen_bn

    calibrate_frozen_bn(m, torch.from_numpy(images(1, 800, 3)[0][None]))
    with torch.no_grad():
        for p in m.roi_heads.box_predictor:
            p.cls_score.bias[0] = 2.0
    return Loaded(m, cfg, {"name": "paper-random"})


def compare(a, b) -> dict:
    import torch

    from napari_hrs.engine.box_ops import pairwise_iou

    n_a = sum(len(d) for d in a)
    n_b = sum(len(d) for d in b)
    ious, dscore = [], []
    for da, db in zip(a, b, strict=True):
        if len(da) and len(db):
            iou = pairwise_iou(torch.from_numpy(da.boxes), torch.from_numpy(db.boxes)).numpy()
            iou[da.classes[:, None] != db.classes[None, :]] = -1.0
            j = iou.argmax(1)
            ious.append(iou[np.arange(len(da)), j].min())
            dscore.append(np.abs(da.scores - db.scores[j]).max())
    return {"detections": [n_a, n_b], "min_box_iou": float(min(ious, default=1.0)),
            "max_score_diff": float(max(dscore, default=0.0))}  # fmt: skip


def count_flops(pred, imgs: list[np.ndarray]) -> float:
    """FLOPs of one forward pass per image (convolutions, matrix products; fp16 or fp32 alike)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        pred.predict(imgs)
    return counter.get_total_flops() / len(imgs)


def device_info(device: str, pred) -> dict:
    """The device's name, whether fp16 autocast ran, torch and CUDA versions."""
    import torch

    info = {"amp_fp16": bool(getattr(pred, "amp", False)), "torch": torch.__version__}
    if device.startswith("cuda"):
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=("compact", "paper", "both"), default="both")
    p.add_argument("--size", type=int, default=None, help="image side (compact 512, paper 800)")
    p.add_argument("--images", type=int, default=None, help="images per round (compact 8, paper 2)")
    p.add_argument("--batch", type=int, default=None, help="images per call (compact 4, paper 2)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="default 0.5 (compact), 0.05 (paper: random weights)")
    p.add_argument("--flops", action="store_true",
                   help="count FLOPs per image and report TFLOP/s")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's fp16 peak (TFLOP/s), for the fraction of it reached")
    args = p.parse_args(argv)

    import torch

    from napari_hrs.engine.detectron2_backend import Detectron2Model, detectron2_available
    from napari_hrs.engine.predictor import Predictor

    if args.threads:
        torch.set_num_threads(args.threads)
    presets = ("compact", "paper") if args.preset == "both" else (args.preset,)
    defaults = {"compact": (512, 8, 4), "paper": (800, 2, 2)}
    for preset in presets:
        size, n, batch = defaults[preset]
        size, n, batch = args.size or size, args.images or n, args.batch or batch
        loaded = model(preset)
        imgs = images(n, size, loaded.cfg.input_channels)
        thr = args.score_threshold
        kw = {"device": args.device,
              "score_threshold": thr if thr is not None else (0.5 if preset == "compact" else 0.05)}  # fmt: skip
        engines = {"native": Predictor(loaded, batch_size=batch, **kw),
                   "native-1": Predictor(loaded, batch_size=1, **kw)}  # fmt: skip
        loaded.model.to(memory_format=torch.contiguous_format)  # detectron2 gets plain weights
        if detectron2_available():
            d2 = Detectron2Model.from_loaded(loaded, device=args.device)
            engines["detectron2"] = Predictor(d2, batch_size=1, channels_last=False, **kw)
            engines["detectron2-batched"] = Predictor(d2, batch_size=batch, channels_last=False,
                                                      **kw)  # fmt: skip
        for pred in engines.values():  # warm-up (allocator, lazy inits)
            pred.predict(imgs[:batch])
        flops = count_flops(engines["native"], imgs[:1]) if args.flops else None
        times: dict[str, list[float]] = {k: [] for k in engines}
        outs = {}
        for _ in range(args.repeat):
            for name, pred in engines.items():
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                outs[name] = pred.predict(imgs)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - t0)
        mp = n * size * size / 1e6
        for name, ts in times.items():
            row = {"preset": preset, "engine": name, "device": args.device, "size": size,
                   "images": n, "batch": engines[name].batch_size, "threads": torch.get_num_threads(),
                   "best_s": round(min(ts), 3), "median_s": round(statistics.median(ts), 3),
                   "mp_per_s": round(mp / min(ts), 3),
                   "detections": sum(len(d) for d in outs[name]),
                   **device_info(args.device, engines[name])}  # fmt: skip
            if flops is not None:
                row["gflop_per_image"] = round(flops / 1e9, 2)
                row["tflops_per_s"] = round(flops * n / min(ts) / 1e12, 4)
                if args.peak_tflops:
                    row["fraction_of_peak"] = round(row["tflops_per_s"] / args.peak_tflops, 4)
            if name != "native":
                row.update(compare(outs["native"], outs[name]))
            print(json.dumps(row))
        if "detectron2" in times:
            best = {k: min(v) for k, v in times.items()}
            print(json.dumps({"preset": preset, "speedup_native_vs_detectron2":
                              round(best["detectron2"] / best["native"], 3),
                              "speedup_native_vs_detectron2_batched":
                              round(best["detectron2-batched"] / best["native"], 3)}))  # fmt: skip
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
