"""``napari-hrs evaluate MODEL DATASET``: COCO mAP, look-alike confusion and marker concordance.

MODEL is a checkpoint path or ``compact`` (the bundled model); DATASET a COCO instance JSON
with its images (or a folder holding ``test.json``). Prints pycocotools' standard summary for
``bbox`` and ``segm``, per-class AP, how many ground-truth cells of each category were called
hRS at the operating threshold, and the PRM1 / PNA concordance of the calls. ``--out DIR`` writes
``report.json`` and ``pr_curve.png`` there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_hrs.cli import add_engine_option


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a model on a COCO dataset (mAP, look-alikes, marker concordance)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="checkpoint path, detectron2 .pth/.pkl, or 'compact'")
    p.add_argument(
        "dataset", type=Path, help="COCO JSON (images beside it) or a folder with test.json"
    )
    p.add_argument("--out", type=Path, default=None, help="folder for report.json and pr_curve.png")
    p.add_argument("--image-root", type=Path, default=None,
                   help="folder the images' file_name are relative to (default: beside the JSON)")  # fmt: skip
    p.add_argument(
        "--score-threshold",
        type=float,
        default=0.05,
        help="predictor threshold for AP (default 0.05: keep the whole PR curve)",
    )
    p.add_argument(
        "--operating-threshold",
        type=float,
        default=0.5,
        help="score from which a detection counts as 'called hRS' (default 0.5)",
    )
    p.add_argument(
        "--target-class",
        default=None,
        help="class whose calls are analysed (default: the model's first class)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: best available)")
    p.add_argument("--batch-size", type=int, default=2, help="images per forward pass")
    p.add_argument("--max-dets", type=int, default=100, help="detections per image for COCOeval")
    add_engine_option(p)
    return p


def resolve_dataset(path: Path, preferred: str) -> Path:
    """A COCO JSON from a path that is one, or a folder holding ``<preferred>.json``."""
    from napari_hrs.cli import CLIError

    if path.is_dir():
        for name in (preferred, "test", "val", "train"):
            if (path / f"{name}.json").is_file():
                return path / f"{name}.json"
        raise CLIError(
            f"{path} holds no {preferred}.json (nor test/val/train.json); pass a COCO JSON"
        )
    if not path.is_file():
        raise CLIError(f"dataset not found: {path}")
    return path


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_hrs.cli import CLIError
    from napari_hrs.errors import HRSError
    from napari_hrs.train.dataset import InstanceDataset
    from napari_hrs.train.evaluate import evaluate

    data = resolve_dataset(args.dataset, "test")
    bar = tqdm(desc="evaluate", unit="img", leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        if args.image_root is not None:
            data = InstanceDataset.from_coco(data, image_root=args.image_root)
        report = evaluate(
            args.model,
            data,
            target_class=args.target_class,
            score_threshold=args.score_threshold,
            operating_threshold=args.operating_threshold,
            device=args.device,
            batch_size=args.batch_size,
            max_dets=args.max_dets,
            out_dir=args.out,
            progress=progress,
            engine=args.engine,
        )
    except (HRSError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from exc
    finally:
        bar.close()
    print(report.text())
    if args.out is not None:
        print(f"report written to {args.out / 'report.json'} and {args.out / 'pr_curve.png'}")
    return 0
