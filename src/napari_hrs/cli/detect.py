"""``napari-hrs detect INPUT --out RESULT.zarr``: find cells in a whole image, tile by tile.

Runs the model over the brightfield channel of INPUT (OME-Zarr, zarr, OME-TIFF, TIFF) in
overlapping tiles, stitches the tiles without seams and writes RESULT.zarr: an NGFF label image
(one id per cell), detections.csv (one row per cell: class, score, box, centroid, area) and
run.json (status, model, parameters, timing). With --in-image the labels go to
INPUT/labels/<name> instead (OME-Zarr only; the image arrays are not touched).

Ctrl-C once stops after the current batch and writes the partial result (status "incomplete");
twice aborts.

examples:
  napari-hrs detect slide.ome.zarr --out slide_detections.zarr
  napari-hrs detect slide.tif --out result.zarr --model my_model.pt --tile 1024 --batch 8 --device cuda
  napari-hrs detect scan.zarr --out result.zarr --channels brightfield=0,PRM1=2,PNA=1 --pixel-size 0.325
  napari-hrs detect slide.ome.zarr --in-image --name detections --overwrite
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from napari_hrs.cli import (
    CLIError,
    add_engine_option,
    add_plane_options,
    parse_channels,
    plane_options,
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``detect`` and its arguments."""
    p = subparsers.add_parser(
        "detect",
        help="detect cells in a whole image (tiled) and write labels + a table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, help="the acquisition (OME-Zarr, zarr, OME-TIFF, TIFF)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", "-o", type=Path, help="result store to create (RESULT.zarr)")
    where.add_argument("--in-image", action="store_true",
                       help="write INPUT/labels/<name> inside the OME-Zarr input instead")  # fmt: skip
    p.add_argument("--name", default="detections", help="label image name for --in-image")
    p.add_argument("--model", default="compact",
                   help="checkpoint path or 'compact' (the bundled model; default)")  # fmt: skip
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA if available)")
    p.add_argument("--tile", type=int, default=1024, help="tile edge in pixels (1024)")
    p.add_argument("--overlap", type=int, default=None,
                   help="tile overlap in pixels (default: the model's largest cell + 32)")  # fmt: skip
    p.add_argument(
        "--batch",
        type=int,
        default=None,
        help="tiles per forward pass (default 4 on CUDA, 1 on the CPU)",
    )
    p.add_argument("--score-threshold", type=float, default=0.5, help="minimum score (0.5)")
    p.add_argument("--max-detections", type=int, default=None,
                   help="per tile (default: the model's cap for the tile size)")  # fmt: skip
    p.add_argument("--channels", default=None,
                   help="channel roles ROLE=INDEX or ROLE=NAME, e.g. brightfield=0,PRM1=2,PNA=1 "
                   "(default: from the channel names)")  # fmt: skip
    p.add_argument("--pixel-size", type=float, default=None,
                   help="pixel size in µm (overrides / supplies the file's)")  # fmt: skip
    add_plane_options(p)
    p.add_argument("--level", type=int, default=0, help="pyramid level to detect on (0)")
    p.add_argument("--no-resample", action="store_true",
                   help="do not resample tiles to the model's pixel size")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing result")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_engine_option(p)
    return p


def _check_args(args: argparse.Namespace) -> None:
    for flag, value, low in (("--tile", args.tile, 32), ("--batch", args.batch, 1)):
        if value is not None and value < low:
            raise CLIError(f"{flag} must be >= {low}, got {value}")
    if not 0.0 <= args.score_threshold <= 1.0:
        raise CLIError(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    if args.overlap is not None and not 0 <= args.overlap < args.tile:
        raise CLIError(f"--overlap must be in [0, --tile), got {args.overlap} (tile {args.tile})")
    if not args.input.exists():
        raise CLIError(f"input {args.input}: no such file or directory")
    if args.out is not None and args.out.exists() and not args.overwrite:
        raise CLIError(f"{args.out} exists; pass --overwrite to replace it, or another --out")
    model = str(args.model)
    if model != "compact" and not Path(model).exists():
        raise CLIError(f"--model {model}: no such checkpoint; pass a checkpoint path or 'compact'")


def run(args: argparse.Namespace) -> int:
    """Open the image, load the model, detect, print a summary."""
    from tqdm import tqdm

    from napari_hrs.engine.detect import detect
    from napari_hrs.errors import HRSError
    from napari_hrs.io import open_acquisition

    _check_args(args)
    stop = {"requested": False}

    def on_sigint(signum: int, frame: Any) -> None:
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("\nstopping after this batch (Ctrl-C again to abort)", file=sys.stderr)

    try:
        acq = open_acquisition(args.input, channels=parse_channels(args.channels),
                               pixel_size_um=args.pixel_size, **plane_options(args))  # fmt: skip
        if args.level >= acq.n_levels or args.level < 0:
            raise CLIError(f"{args.input}: no level {args.level}; it has {acq.n_levels} level(s)")
        if args.in_image and not acq.format.startswith("ome-zarr"):
            raise CLIError(f"--in-image needs an OME-Zarr input; {args.input} is {acq.format!r}. "
                           "Pass --out RESULT.zarr instead.")  # fmt: skip
        if args.in_image:
            from napari_hrs.engine.detect import resolve_output

            target = resolve_output(acq, None, args.name)[0]
            if target.exists() and not args.overwrite:
                raise CLIError(f"{target} exists; pass --overwrite to replace it, or --name")
        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            with tqdm(total=1, unit="tile", desc="detect", disable=args.quiet) as bar:

                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

                result = detect(
                    acq, args.model, tile=args.tile, overlap=args.overlap, batch=args.batch,
                    device=args.device, score_threshold=args.score_threshold,
                    max_detections=args.max_detections,
                    out=None if args.in_image else args.out, level=args.level,
                    resample=not args.no_resample, progress=progress,
                    cancel=lambda: stop["requested"], name=args.name, overwrite=args.overwrite,
                    engine=args.engine,
                )  # fmt: skip
        finally:
            signal.signal(signal.SIGINT, previous)
    except HRSError as exc:
        raise CLIError(str(exc)) from exc
    except (FileExistsError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    meta = result.metadata
    counts = result.table["class_name"].value_counts().to_dict() if len(result.table) else {}
    per_class = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
    timing = meta.get("timing", {})
    print(f"{len(result.table)} instances ({per_class}) in {meta.get('tiles_done')}/"
          f"{meta.get('tiles_total')} tiles, {timing.get('total_s', float('nan')):.1f} s")  # fmt: skip
    print(f"status: {result.status}; written to {result.path}")
    return 0 if result.complete else 1
