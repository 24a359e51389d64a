"""``napari-hrs train DATASET --out MODEL.pt``: train the Cascade Mask R-CNN.

DATASET is a COCO instance JSON with its images, or a folder holding ``train.json`` (and
``val.json``, then used for validation). A tqdm bar shows the losses. The checkpoint at
``--out`` is rewritten every ``--checkpoint-every`` iterations (atomically); ``--resume``
continues from it. Model config keys are changed with ``--set key=value`` (repeatable), e.g.
``--set model.roi_heads.batch_size_per_image=64``.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a model on a COCO dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "dataset", type=Path, help="COCO JSON (images beside it) or a folder with train.json"
    )
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (MODEL.pt)")
    p.add_argument("--val", type=Path, default=None, help="validation COCO JSON")
    p.add_argument("--image-root", type=Path, default=None,
                   help="folder the images' file_name are relative to (default: beside the JSON)")  # fmt: skip
    p.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="hold out this fraction of DATASET's images for validation (stratified)",
    )
    p.add_argument(
        "--classes",
        default=None,
        help="comma-separated category names to learn (default: all in the file)",
    )
    p.add_argument("--preset", default="compact", choices=("compact", "paper"))
    p.add_argument(
        "--init",
        default=None,
        help="start from weights: a checkpoint, a detectron2 .pth/.pkl, or 'compact'",
    )
    p.add_argument(
        "--iters",
        type=int,
        default=None,
        help="training iterations (default 2000; with --resume: the resumed run's)",
    )
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument(
        "--lr", type=float, default=None, help="base learning rate (default per optimizer)"
    )
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adamw"))
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=100, help="warm-up iterations")
    p.add_argument("--schedule", default="cosine", choices=("cosine", "steps", "constant"))
    p.add_argument("--grad-clip", type=float, default=10.0, help="max gradient norm (0: off)")
    p.add_argument("--crop-size", type=int, default=None, help="random crops of this size (px)")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: best available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint at --out")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data loader processes (default: one per spare core, at most 4)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: the cores the loader leaves, at least 1)",
    )
    p.add_argument(
        "--no-train-state",
        action="store_true",
        help="drop the optimizer state from the final checkpoint (smaller file, cannot be resumed)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model config key (repeatable)",
    )
    return p


def parse_overrides(items: list[str]) -> dict:
    """``["a.b=3", "c=[1,2]", "d=text"]`` -> ``{"a.b": 3, "c": [1, 2], "d": "text"}``."""
    from napari_hrs.cli import CLIError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"--set expects KEY=VALUE, got {item!r}")
        low = value.strip().lower()
        if low in ("true", "false"):
            parsed = low == "true"
        elif low in ("none", "null"):
            parsed = None
        else:
            try:
                parsed = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                parsed = value
        out[key.strip()] = parsed
    return out


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_hrs.cli import CLIError
    from napari_hrs.cli.evaluate import resolve_dataset
    from napari_hrs.errors import Cancelled, HRSError
    from napari_hrs.train import AugmentConfig, InstanceDataset, fit, split_dataset

    train_path = resolve_dataset(args.dataset, "train")
    val = args.val
    if val is None and args.dataset.is_dir() and (args.dataset / "val.json").is_file():
        val = args.dataset / "val.json"
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    try:
        root = args.image_root
        train_data = InstanceDataset.from_coco(train_path, image_root=root)
        val_data = InstanceDataset.from_coco(val, image_root=root) if val is not None else None
        if args.val_fraction:
            train_data, val_data = split_dataset(
                train_data, args.val_fraction, seed=args.seed, class_names=classes
            )
    except (HRSError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from exc
    augment = None if args.no_augment else AugmentConfig(crop_size=args.crop_size)
    if args.no_augment and args.crop_size:
        augment = AugmentConfig.none(crop_size=args.crop_size)
    bar = tqdm(total=args.iters, desc="train", unit="it", dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    def on_log(it: int, row: dict) -> None:
        groups = {"total": 0.0, "rpn": 0.0, "cls": 0.0, "box": 0.0, "mask": 0.0}
        for key, value in row.items():
            if key == "total":
                groups["total"] = value
            elif key.startswith("loss_"):
                name = key[5:]
                group = "rpn" if name.startswith("rpn") else name.split("_")[0]
                groups[group] = groups.get(group, 0.0) + value
        bar.set_postfix({k: f"{v:.3f}" for k, v in groups.items()}, refresh=False)

    try:
        out = fit(
            train_data,
            val_data=val_data,
            class_names=classes,
            preset=args.preset,
            init=args.init,
            out=args.out,
            iters=args.iters,
            batch_size=args.batch_size,
            lr=args.lr,
            optimizer=args.optimizer,
            weight_decay=args.weight_decay,
            warmup=args.warmup,
            schedule=args.schedule,
            grad_clip=args.grad_clip,
            augment=augment,
            device=args.device,
            seed=args.seed,
            checkpoint_every=args.checkpoint_every,
            resume=args.resume,
            num_workers=args.workers,
            threads=args.threads,
            keep_train_state=not args.no_train_state,
            overrides=parse_overrides(args.overrides),
            progress=progress,
            on_log=on_log,
        )
    except Cancelled as exc:
        raise CLIError(str(exc)) from exc
    except (HRSError, FileNotFoundError, ValueError, FloatingPointError) as exc:
        raise CLIError(str(exc)) from exc
    finally:
        bar.close()
    print(f"model saved to {out}")
    return 0
