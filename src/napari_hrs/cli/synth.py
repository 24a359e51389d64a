"""``napari-hrs synth``: write a synthetic hRS acquisition (OME-Zarr) or a COCO dataset.

Examples::

    napari-hrs synth scene.ome.zarr --size 4096 --seed 0
    napari-hrs synth scene.ome.zarr --size 2048x3072 --pixel-size 0.2 --overwrite
    napari-hrs synth coco_dir --coco --n-images 200 --image-size 256 --seed 0 --splits 0.8,0.1,0.1

The same seed gives the same pixels whatever --chunk and --workers are. Data are uint16 with a
12-bit range (0..4095); sizes in pixels, --pixel-size in micrometres.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_hrs.cli import CLIError


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace(",", "x").split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        msg = f"size {text!r}: pass N or YxX, e.g. 4096 or 2048x3072"
        raise argparse.ArgumentTypeError(msg) from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 16:
        raise argparse.ArgumentTypeError(f"size {text!r}: pass N or YxX with sides >= 16")
    return vals[0], vals[1]


def _splits(parts: list[str]) -> tuple[float, float, float]:
    text = " ".join(parts)
    try:
        vals = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        vals = ()
    if len(vals) != 3 or min(vals) < 0 or sum(vals) <= 0:
        raise CLIError(f"--splits {text!r}: pass three fractions TRAIN,VAL,TEST, e.g. 0.8,0.1,0.1")
    return vals  # type: ignore[return-value]


def _density_jitter(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        lo = hi = float("nan")
    if not (0 < lo <= hi < 100):
        raise argparse.ArgumentTypeError(
            f"--density-jitter {text!r}: pass LO,HI factors with 0 < LO <= HI < 100, e.g. 0.1,1.5"
        )
    return lo, hi


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``napari-hrs synth`` and its options; return the subparser."""
    p = subparsers.add_parser(
        "synth",
        help="generate a synthetic hRS acquisition (OME-Zarr) or a COCO training set",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", type=Path, help="output .ome.zarr (or a folder with --coco)")
    p.add_argument("--size", type=_size, default=(4096, 4096), help="N or YxX pixels (4096)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--pixel-size", type=float, default=0.325, help="µm per pixel (0.325)")
    p.add_argument("--density", type=float, default=1.0, help="cell density scale (1.0)")
    p.add_argument("--chunk", type=int, default=1024, help="zarr chunk side, pixels (1024)")
    p.add_argument(
        "--workers", type=int, default=None, help="rendering threads (CPU count, at most 4)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a previous synthetic output (never any other file or folder)",
    )
    p.add_argument("--coco", action="store_true", help="write a COCO dataset instead")
    p.add_argument("--n-images", type=int, default=200, help="COCO: number of images (200)")
    p.add_argument("--image-size", type=int, default=256, help="COCO: image side (256)")
    p.add_argument("--density-jitter", type=_density_jitter, default=None,
                   metavar="LO,HI", help="COCO: each image's density factor, drawn uniformly "
                   "from LO..HI (default synth.scene.DENSITY_JITTER, 0.6,1.5; 0.1,1.5 adds "
                   "sparse fields)")  # fmt: skip
    p.add_argument(
        "--splits",
        nargs="+",
        default=["0.8,0.1,0.1"],
        metavar="TRAIN,VAL,TEST",
        help="COCO: split fractions (0.8,0.1,0.1; spaces work too)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    """Generate the acquisition (or the COCO set) with a tqdm progress bar; 0 on success."""
    from tqdm import tqdm

    from napari_hrs.synth import export_coco, generate_acquisition
    from napari_hrs.synth.scene import DENSITY_JITTER

    splits = _splits(args.splits)
    bar = tqdm(total=0, unit="chunk" if not args.coco else "img", disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        if args.coco:
            paths = export_coco(
                args.out,
                n_images=args.n_images,
                image_size=args.image_size,
                seed=args.seed,
                pixel_size_um=args.pixel_size,
                splits=splits,
                density=args.density,
                density_jitter=args.density_jitter or DENSITY_JITTER,
                overwrite=args.overwrite,
                progress=progress,
            )
            bar.close()
            print("wrote " + ", ".join(str(p) for p in paths.values()))
        else:
            out = generate_acquisition(
                args.out,
                size=args.size,
                seed=args.seed,
                pixel_size_um=args.pixel_size,
                density=args.density,
                chunk=args.chunk,
                overwrite=args.overwrite,
                workers=args.workers,
                progress=progress,
            )
            bar.close()
            print(f"wrote {out}")
    except (FileExistsError, ValueError) as exc:
        bar.close()
        raise CLIError(str(exc)) from exc
    return 0
