"""Benchmark ``napari-hrs batch``: throughput and peak memory per worker vs workers and size.

    python bench/bench_batch.py --sizes 2048 --workers 1,2
    python bench/bench_batch.py --sizes 8192,32768 --workers 2 --mosaic     # memory vs size

For each size a synthetic acquisition is generated once into ``--workdir`` (reused later). For
each (size, workers) a fresh LocalCluster runs :func:`napari_hrs.batch.run_batch` with the
bundled compact model; reported: wall time of the run (cluster start excluded), Mpixel/s of
brightfield, the peak RSS of every worker process (``ru_maxrss``, read on the workers after the
run) and of the client. Memory per worker should stay flat as the image grows: it depends on
the tile and batch size and the model, not on the image.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(size: int, workers: int, workdir: Path, tile: int, batch: int, mosaic: bool = False
        ) -> dict:  # fmt: skip
    from distributed import Client, LocalCluster

    from napari_hrs.batch import run_batch
    from napari_hrs.synth import generate_acquisition

    src = workdir / f"{'mosaic' if mosaic else 'synth'}_{size}.ome.zarr"
    if mosaic:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_napari_open import make_mosaic

        make_mosaic(src, size)
    elif not src.exists():
        t0 = time.perf_counter()
        generate_acquisition(src, size=size, seed=1, chunk=1024)
        print(f"generated {src} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    out = workdir / f"out_{size}_{workers}"
    shutil.rmtree(out, ignore_errors=True)
    cores = os.cpu_count() or 1
    threads = max(1, cores // workers)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=40)  # fmt: skip
    client = Client(cluster)
    try:
        client.run(lambda: __import__("torch").set_num_threads(threads))
        t0 = time.perf_counter()
        res = run_batch([src], out, client=client, tile=tile, batch=batch, device="cpu")
        wall = time.perf_counter() - t0
        rss = client.run(_peak_rss_mb)
    finally:
        client.close()
        cluster.close()
    f = res.files[0]
    return {
        "size": size, "input": "mosaic" if mosaic else "synth", "workers": workers, "torch_threads_per_worker": threads, "tile": tile,
        "batch": batch, "status": f.status, "cells": f.n_detections, "tiles": f.tiles_total,
        "seconds": round(wall, 1), "mpix_per_s": round(size * size / 1e6 / wall, 3),
        "worker_peak_rss_mb": sorted(round(v) for v in rss.values()),
        "client_peak_rss_mb": round(_peak_rss_mb()),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--sizes", default="2048", help="comma-separated image sides (px)")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/napari-hrs-bench-batch"))
    ap.add_argument("--mosaic", action="store_true",
                    help="input: the sample repeated (bench_napari_open.make_mosaic: made in "
                         "seconds at any size) instead of a generated acquisition")  # fmt: skip
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    for size in (int(s) for s in args.sizes.split(",")):
        for w in (int(s) for s in args.workers.split(",")):
            print(json.dumps(run(size, w, args.workdir, args.tile, args.batch, args.mosaic)),
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
