"""Benchmark marker quantification: MB/s of channel data, and the I/O vs compute split.

    python bench/bench_markers.py --size 4096            # synthetic acquisition, 2 markers
    python bench/bench_markers.py --size 8192 --tile 2048 --repeat 3
    python bench/bench_markers.py --image slide.ome.zarr --labels slide.ome.zarr/labels/ground_truth
    python bench/bench_markers.py --size 8192 --sequential-ids   # ids 1..N, as detections number them
    python bench/bench_markers.py --size 8192 --sequential-ids --boxes  # + detection boxes

The acquisition comes from :func:`napari_hrs.synth.generate_acquisition` (written once into
``--workdir``) with its ground-truth labels. Reported, best of ``--repeat`` runs:

- ``read``: reading every tile of the marker channels only (zarr decompression, dask) -> MB/s;
- ``labels``: reading the labels only;
- ``markers direct`` / ``labels+markers``: the same tiles read as quantify reads them (through
  the store readers of :mod:`napari_hrs.io.direct`); the second is the least decompression the
  quantification needs, its bound;
- ``quantify``: the whole :func:`napari_hrs.markers.quantify_acquisition` -> MB/s of channel
  bytes (2 bytes x Y x X per uint16 channel), with its own split: labels pass (pass 1), time
  waiting for reads, compute (reads overlap compute on a thread).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _acquisition(args: argparse.Namespace):
    from napari_hrs.cli.quantify import open_labels
    from napari_hrs.io import open_acquisition

    if args.image is not None:
        acq = open_acquisition(args.image, strict=False)
        return acq, open_labels(args.labels)[0], args.image
    from napari_hrs.synth import generate_acquisition, read_ground_truth

    path = Path(args.workdir) / f"bench_markers_{args.size}_s{args.seed}.ome.zarr"
    if not path.exists():
        t = time.perf_counter()
        generate_acquisition(path, size=args.size, seed=args.seed)
        print(f"generated {path} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    labels, truth = read_ground_truth(path)
    if args.sequential_ids:
        labels = _sequential(
            labels, truth, path.with_name(path.name.replace(".ome.zarr", "_seq.zarr"))
        )
    return open_acquisition(path), labels, path


def _sequential(labels, truth, target: Path):
    """The ground truth renumbered 1..N (as a detection result numbers its cells), written once
    as NGFF labels beside the acquisition with the same chunks and codec, opened lazily."""
    import numpy as np

    from napari_hrs.cli.quantify import open_labels
    from napari_hrs.io.ngff import labels_writer

    if not target.exists():
        ids = np.sort(truth["label_id"].to_numpy())
        lut = np.zeros(int(ids.max()) + 1, np.uint32)
        lut[ids] = np.arange(1, len(ids) + 1, dtype=np.uint32)
        cy, cx = labels.chunksize
        with labels_writer(target, "sequential", labels.shape, chunks=(cy, cx)) as arr:
            for y in range(0, labels.shape[0], cy):
                arr[y : y + cy] = lut[np.asarray(labels[y : y + cy])]
    return open_labels(target)[0]


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _read_all(arrays, tile: int) -> int:
    import dask

    h, w = arrays[0].shape[-2:]
    n = 0
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            for a in dask.compute(*[a[..., y : y + tile, x : x + tile] for a in arrays]):
                n += a.nbytes
    return n


def _read_direct(arrays, tile: int) -> int:
    """Read every tile as quantify does: through the store readers (napari_hrs.io.direct)."""
    from napari_hrs.markers._tiles import Source, read_region

    srcs = [Source.of(a, "bench") for a in arrays]
    h, w = srcs[0].shape
    n = 0
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            region = (slice(y, min(y + tile, h)), slice(x, min(x + tile, w)))
            n += sum(a.nbytes for a in read_region(srcs, region, (h, w), pads=(0, 0), signed=False))
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--size", type=int, default=4096, help="synthetic image edge in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tile", type=int, default=2048)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workdir", default=os.environ.get("TMPDIR", "/tmp"))
    p.add_argument("--image", type=Path, default=None, help="an existing acquisition instead")
    p.add_argument("--labels", type=Path, default=None, help="its labels (with --image)")
    p.add_argument("--threads", type=int, default=None, help="quantify(threads=...)")
    p.add_argument(
        "--sequential-ids", action="store_true",
        help="renumber the ground truth 1..N as a detection result numbers its cells (the "
        "generator's ids are sparse: up to ~7x the cell count)",
    )  # fmt: skip
    p.add_argument(
        "--labels-in-memory", action="store_true",
        help="load the labels into a numpy array first (as a detection in memory hands them "
        "over): only the marker channels are decompressed during quantification",
    )  # fmt: skip
    p.add_argument(
        "--boxes", action="store_true",
        help="give quantify each cell's box (as a detection table does: the exact boxes "
        "widened by 0.5 px, fractional), which skips the labels pass",
    )  # fmt: skip
    args = p.parse_args(argv)

    import dask.array as da
    import numpy as np

    from napari_hrs.io.direct import direct_reader
    from napari_hrs.markers import quantify_acquisition

    acq, labels, path = _acquisition(args)
    if args.labels_in_memory:
        labels = np.asarray(labels)
    chans = [acq.channel("PRM1"), acq.channel("PNA")]
    mb = sum(c.shape[-2] * c.shape[-1] * c.dtype.itemsize for c in chans) / 1e6
    print(f"acquisition {path}: {acq.shape} {acq.dtype}, channel data {mb:.0f} MB")
    print(f"cpu cores: {os.cpu_count()}, tile {args.tile}, best of {args.repeat}")

    t_read, _ = _best(lambda: _read_all(chans, args.tile), args.repeat)
    print(f"read     markers only : {t_read:6.2f} s  {mb / t_read:7.0f} MB/s")
    lab_mb = labels.shape[-2] * labels.shape[-1] * labels.dtype.itemsize / 1e6
    t_lab, _ = _best(lambda: _read_all([da.asarray(labels)], args.tile), args.repeat)
    print(f"read     labels only  : {t_lab:6.2f} s  {lab_mb / t_lab:7.0f} MB/s ({lab_mb:.0f} MB)")

    lazy_labels = not isinstance(labels, np.ndarray)
    direct = all(direct_reader(a) is not None for a in [*chans, labels][: 3 if lazy_labels else 2])
    t_dir, _ = _best(lambda: _read_direct(chans, args.tile), args.repeat)
    print(
        f"read     markers direct: {t_dir:6.2f} s  {mb / t_dir:7.0f} MB/s (store readers: {direct})"
    )
    needed = [labels, *chans] if lazy_labels else chans
    t_all, _ = _best(lambda: _read_direct(needed, args.tile), args.repeat)
    print(
        f"read     {'labels+markers' if lazy_labels else 'markers (labels in memory)'}: "
        f"{t_all:6.2f} s  {mb / t_all:7.0f} MB/s of channel data "
        "(the decompression quantify cannot avoid)"
    )

    boxes = None
    if args.boxes:  # untimed: the boxes a detector reports come with its labels
        exact = quantify_acquisition(acq, labels, markers=(), tile=args.tile)
        boxes = {"label_id": exact["label_id"]}
        for c, d in (("x0", -0.5), ("y0", -0.5), ("x1", 0.5), ("y1", 0.5)):
            boxes[c] = exact[f"bbox_{c}"] + d
    cpu = []

    def run():
        c = time.process_time()
        out = quantify_acquisition(acq, labels, tile=args.tile, threads=args.threads, boxes=boxes)
        cpu.append(time.process_time() - c)
        return out

    t_q, table = _best(run, args.repeat)
    info = table.attrs["quantify"]
    print(
        f"quantify {len(table):>6} cells : {t_q:6.2f} s  {mb / t_q:7.0f} MB/s of channel data "
        f"({100 * t_all / t_q:.0f} % of the read bound; CPU {min(cpu):.2f} s)"
    )
    print(
        f"  split (last run): labels pass {info['labels_pass_s']:.2f} s, region reads "
        f"{info['read_s']:.2f} s (waited {info['wait_s']:.2f} s), compute {info['compute_s']:.2f} s"
        f", channel bytes read {info['channel_bytes'] / 1e6:.0f} MB"
    )
    if args.boxes and not info["boxes_given"]:
        print("  the boxes did not hold every cell: measured again with the labels pass")
    per_cell = 1e6 * info["compute_s"] / max(len(table), 1)
    print(f"  compute per cell: {per_cell:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
