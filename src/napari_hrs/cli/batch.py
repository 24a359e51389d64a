"""``napari-hrs batch INPUTS... --out DIR``: detect and quantify many acquisitions on dask.

Examples::

    napari-hrs batch scans/*.ome.zarr --out results/                  # LocalCluster
    napari-hrs batch plate.ome.zarr --out results/ --local-workers 2
    napari-hrs batch /data/slides/ --out /data/results --scheduler tcp://10.0.0.5:8786

Work is split into tiles, so one large mosaic spreads over all workers; each worker loads the
model once. Results: ``DIR/<name>.zarr`` per acquisition (NGFF labels, detections.csv,
cells.csv, summary.json), ``DIR/summary.csv`` and ``DIR/summary.json`` (one row per
acquisition, failures with reasons). Re-running the same command resumes: finished files are
skipped and finished tiles reused (``--restart`` recomputes everything). Exit status 0 when all
acquisitions are done, 1 when some failed, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from napari_hrs.cli import CLIError, add_plane_options, parse_channels, plane_options


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``batch`` and its arguments."""
    p = subparsers.add_parser(
        "batch",
        help="detect + quantify many acquisitions on a dask cluster (resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+",
                   help="acquisitions, globs, folders of acquisitions or OME-Zarr plates")  # fmt: skip
    p.add_argument("--out", "-o", type=Path, required=True, help="output folder")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None,
                       help="address of an existing dask scheduler (tcp://host:port)")  # fmt: skip
    where.add_argument("--local-workers", type=int, default=None,
                       help="LocalCluster worker processes (default: cores // 2, or one per GPU)")  # fmt: skip
    p.add_argument("--gpus-per-worker", type=int, default=None,
                   help="GPUs per worker (0: CPU only; default: 1 when GPUs are present)")  # fmt: skip
    p.add_argument("--model", default="compact",
                   help="checkpoint path or 'compact' (the bundled model; default)")  # fmt: skip
    p.add_argument("--device", default=None, help="force a device on the workers (cpu, cuda)")
    p.add_argument("--tile", type=int, default=1024, help="tile edge in pixels (1024)")
    p.add_argument("--overlap", type=int, default=None,
                   help="tile overlap in pixels (default: the model's largest cell + 32)")  # fmt: skip
    p.add_argument("--batch", type=int, default=4, help="tiles per task / forward pass (4)")
    p.add_argument("--score-threshold", type=float, default=0.5, help="minimum score (0.5)")
    p.add_argument("--channels", default=None,
                   help="channel roles ROLE=INDEX or ROLE=NAME, e.g. brightfield=0,PRM1=2,PNA=1")  # fmt: skip
    p.add_argument("--pixel-size", type=float, default=None, help="pixel size in µm")
    add_plane_options(p)
    p.add_argument("--marker-method", default="otsu", choices=("otsu", "background_sd"),
                   help="marker positivity call (otsu)")  # fmt: skip
    p.add_argument("--restart", action="store_true",
                   help="ignore earlier runs into --out and recompute everything")  # fmt: skip
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    """Run the batch; print the dashboard link, a progress bar and a per-file summary."""
    for flag, value, low in (("--tile", args.tile, 32), ("--batch", args.batch, 1)):
        if value < low:
            raise CLIError(f"{flag} must be >= {low}, got {value}")
    if args.local_workers is not None and args.local_workers < 1:
        raise CLIError(f"--local-workers must be >= 1, got {args.local_workers}")
    from tqdm import tqdm

    from napari_hrs.batch import run_batch
    from napari_hrs.errors import HRSError

    bar = None if args.quiet else tqdm(total=0, unit="tile", desc="batch", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    def on_start(client: Any) -> None:
        link = getattr(client, "dashboard_link", "")
        where = getattr(client, "scheduler", None)
        addr = getattr(where, "address", "") if where is not None else ""
        print(f"dask scheduler {addr}" + (f", dashboard {link}" if link else
              " (dashboard: install bokeh to get one)"), file=sys.stderr)  # fmt: skip

    try:
        result = run_batch(
            args.inputs, args.out, model=args.model, scheduler=args.scheduler,
            local_workers=args.local_workers, gpus_per_worker=args.gpus_per_worker,
            device=args.device, tile=args.tile, overlap=args.overlap, batch=args.batch,
            score_threshold=args.score_threshold, channels=parse_channels(args.channels),
            pixel_size_um=args.pixel_size, plane=plane_options(args),
            marker_method=args.marker_method,
            resume=not args.restart, progress=progress, on_start=on_start,
        )  # fmt: skip
    except (FileNotFoundError, HRSError) as exc:  # missing inputs, unreachable scheduler
        raise CLIError(str(exc)) from None
    except KeyboardInterrupt:
        print("\ninterrupted: finished tiles are kept; run the same command to resume",
              file=sys.stderr)  # fmt: skip
        return 130
    finally:
        if bar is not None:
            bar.close()
    for f in result.files:
        detail = f.reason if f.status == "failed" else f"{f.n_detections} cells"
        frac = f.summary.get("fraction_marker_positive")
        if f.status in ("done", "skipped") and frac is not None and frac == frac:
            detail += f", {100 * frac:.1f} % of hRS PRM1+ and/or PNA+"
        print(f"{f.status:8s} {f.name}: {detail}")
    print(f"summary: {result.out / 'summary.csv'}")
    if result.cancelled:
        return 130
    return 0 if result.ok else 1
