"""Does a blank frame around a field change the detections? (padding, GroupNorm context)

    python bench/bench_framing.py [--size 512] [--frame 3] [--tiles 256,512,1024,2048]

Generates a synthetic field (napari_hrs.synth, seed 3, 0.325 µm/px), then detects with the
bundled model on the field alone and on the field centred in a ``frame`` x larger canvas of
zeros (mosaic padding) and of the field's median (a uniform frame), at several tile sizes.
Prints detections and hRS per case: with no context effect every row would equal the field's.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512, help="field side, pixels (512)")
    p.add_argument("--frame", type=int, default=3, help="canvas side / field side (3)")
    p.add_argument("--tiles", default="256,512,1024,2048", help="tile sizes, model pixels")
    args = p.parse_args(argv)

    import tifffile

    from napari_hrs.engine.checkpoint import bundled_model_path, load_checkpoint
    from napari_hrs.engine.detect import detect
    from napari_hrs.io import open_acquisition
    from napari_hrs.synth import generate_acquisition

    model = load_checkpoint(bundled_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        acq = generate_acquisition(d / "f.ome.zarr", size=args.size, seed=3, chunk=256)
        bf = np.asarray(open_acquisition(acq).channel("brightfield"))
        n, s = args.size * args.frame, args.size * (args.frame // 2)
        cases = {"field alone": bf}
        for name, value in (("zero frame", 0), ("median frame", int(np.median(bf)))):
            canvas = np.full((n, n), value, bf.dtype)
            canvas[s : s + args.size, s : s + args.size] = bf
            cases[name] = canvas
        print(f"{'case':<14} {'tile':>5} {'detections':>10} {'hRS':>5}")
        for name, img in cases.items():
            path = d / f"{name.replace(' ', '_')}.tif"
            tifffile.imwrite(path, img)
            for tile in (int(t) for t in args.tiles.split(",")):
                res = detect(open_acquisition(path, pixel_size_um=0.325), model, tile=tile,
                             out=d / f"{path.stem}_{tile}.zarr", device="cpu")  # fmt: skip
                hrs = int(res.table["class_name"].isin(["round_spermatid", "hRS"]).sum())
                print(f"{name:<14} {tile:>5} {len(res.table):>10} {hrs:>5}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
