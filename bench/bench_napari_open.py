"""Benchmark opening a whole-slide OME-Zarr in napari: time to first frame and added memory.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python bench/bench_napari_open.py --size 32768

A ``--size`` x ``--size`` x 3-channel (brightfield, PRM1, PNA; uint16) OME-Zarr mosaic is made
once in ``--workdir`` from the bundled sample (1024 x 1024): every level of its pyramid is the
sample, downsampled, repeated. Each chunk is encoded once per level and channel and hard-linked
to every position (the mosaic is periodic), so making a 32k x 32k slide takes seconds and no
disk, while napari still reads and decodes real compressed chunks.

Then, in this process: napari's viewer is created (not timed), the mosaic is opened with the
napari-hrs reader (``napari_hrs._napari.reader``), its layers added, and the canvas rendered
(``viewer.screenshot``): ``open_s`` (reader: metadata + contrast limits from the coarsest level),
``first_frame_s`` (open + add layers + first rendered frame), ``added_rss_mb`` (resident memory
after the first frame minus before opening; the image itself is 6 GiB at 32k). Also a zoom to
full resolution in the middle of the slide (``zoom_frame_s``). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_mosaic(path: Path, size: int, chunk: int = 1024) -> Path:
    """The periodic mosaic described in the module docstring (kept if it exists)."""
    from napari_hrs.io import ngff, open_acquisition
    from napari_hrs.synth.sample import sample_path
    from napari_hrs.synth.writer import COLORS, WINDOWS

    if (path / ".zattrs").is_file():
        return path
    src = open_acquisition(sample_path())
    tile = np.asarray(src.levels[0]).astype(np.uint16)  # (3, 1024, 1024)
    period = tile.shape[-1]
    if size % period or chunk != period:
        raise ValueError(f"--size must be a multiple of {period} (chunks of {period})")
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    group = ngff.create_image(tmp, (3, size, size), chunks=(chunk, chunk), pixel_size_um=0.325,
                              channel_names=src.channel_names, colors=COLORS, windows=WINDOWS,
                              name=path.name)  # fmt: skip
    n_levels = len([k for k in group.array_keys()])
    level_tile = tile
    for level in range(n_levels):
        arr = group[str(level)]
        side = arr.shape[-1]
        cs = arr.chunks[-1]
        reps = max(1, cs // level_tile.shape[-1])
        block = np.tile(level_tile, (1, reps, reps))[:, :cs, :cs]
        for c in range(3):
            arr[c, :cs, :cs] = block[c]
            first = tmp / str(level) / str(c) / "0" / "0"
            n = -(-side // cs)
            for y in range(n):
                for x in range(n):
                    if y == 0 and x == 0:
                        continue
                    if (y + 1) * cs > side or (x + 1) * cs > side:  # a partial edge chunk
                        arr[c, y * cs : (y + 1) * cs, x * cs : (x + 1) * cs] = block[
                            c, : min(cs, side - y * cs), : min(cs, side - x * cs)]  # fmt: skip
                        continue
                    dest = tmp / str(level) / str(c) / str(y) / str(x)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.link(first, dest)
        level_tile = ngff.downsample(level_tile, "image")
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=32768)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/hrs-bench"))
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    path = make_mosaic(args.workdir / f"mosaic_{args.size}.ome.zarr", args.size)
    print(f"mosaic {path} ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    from napari_hrs._widgets._common import avoid_triton_crash

    avoid_triton_crash()
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_hrs._napari.reader import get_reader

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    for _ in range(20):
        QApplication.processEvents()
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    reader = get_reader(str(path))
    layer_data = reader(str(path))
    t_open = time.perf_counter() - t0
    for data, kwargs, layer_type in layer_data:
        viewer._add_layer_from_data(data, kwargs, layer_type)
    viewer.reset_view()
    viewer.screenshot(canvas_only=True, flash=False)
    t_first = time.perf_counter() - t0
    rss1 = _rss_mb()
    # zoom to full resolution in the middle of the slide
    t1 = time.perf_counter()
    viewer.camera.center = (0.0, args.size * 0.325 / 2, args.size * 0.325 / 2)
    viewer.camera.zoom = viewer.camera.zoom * args.size / 1400
    viewer.screenshot(canvas_only=True, flash=False)
    t_zoom = time.perf_counter() - t1
    shape = tuple(int(s) for s in viewer.layers[0].data[0].shape)
    print(json.dumps({"size": args.size, "level0_shape": shape, "layers": len(viewer.layers),
                      "levels": len(viewer.layers[0].data), "open_s": round(t_open, 3),
                      "first_frame_s": round(t_first, 3), "zoom_frame_s": round(t_zoom, 3),
                      "added_rss_mb": round(rss1 - rss0, 1),
                      "image_gib": round(3 * args.size**2 * 2 / 2**30, 2)}))  # fmt: skip
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
