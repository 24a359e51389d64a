"""Fine-tune on annotations drawn in napari: image + instance labels -> model + evaluation.

:func:`finetune_on_labels` is what the Train widget runs, usable from a script: it cuts each
annotated image into square crops (so one large annotated field gives many training images and
a held-out validation part), builds an :class:`~napari_hrs.train.dataset.InstanceDataset`,
splits it by crop (stratified by class), trains with :func:`~napari_hrs.train.fit` starting from
the bundled model (or a checkpoint, or from scratch), and evaluates the result on the held-out
crops with :func:`~napari_hrs.train.evaluate` (COCO mAP, PR curve).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrs.errors import DatasetError

__all__ = ["FinetuneResult", "crop_annotations", "finetune_on_labels"]


@dataclass
class FinetuneResult:
    """The trained checkpoint, its evaluation on the held-out crops, and the split sizes."""

    checkpoint: Path
    report: Any  # napari_hrs.train.evaluate.EvalReport
    eval_dir: Path
    n_train: int
    n_val: int


def crop_annotations(
    image: np.ndarray,
    labels: np.ndarray,
    size: int = 512,
    min_instances: int = 1,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut ``image`` (``(Y, X)`` or ``(C, Y, X)``) and its instance ``labels`` (``(Y, X)``,
    0 = background) into non-overlapping ``size`` x ``size`` pixel crops (the last row and column
    shifted inwards to stay inside); keep the crops holding at least ``min_instances`` labelled
    cells. Cells cut by a crop border stay as partial instances (their visible part)."""
    image = np.asarray(image)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DatasetError(f"labels must be (Y, X) instance labels, got shape {labels.shape}")
    if image.shape[-2:] != labels.shape:
        raise DatasetError(f"image {image.shape[-2:]} and labels {labels.shape} differ in size; "
                           "pick the labels drawn on this image")  # fmt: skip
    h, w = labels.shape
    sy, sx = min(size, h), min(size, w)
    ys = sorted({min(y, h - sy) for y in range(0, h, sy)})
    xs = sorted({min(x, w - sx) for x in range(0, w, sx)})
    out = []
    for y in ys:
        for x in xs:
            lab = labels[y : y + sy, x : x + sx]
            if len(np.unique(lab[lab > 0])) >= min_instances:
                out.append((image[..., y : y + sy, x : x + sx], lab))
    return out


def finetune_on_labels(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    out: str | Path,
    classes: Sequence[Mapping[int, str] | None] | None = None,
    class_names: Sequence[str] = ("round_spermatid",),
    init: str | Path | None = "compact",
    preset: str = "compact",
    iters: int = 300,
    crop: int = 256,
    val_fraction: float = 0.2,
    batch_size: int = 2,
    lr: float | None = None,
    device: str | None = None,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> FinetuneResult:
    """Train on napari-style annotations and evaluate on a held-out part of them.

    Parameters
    ----------
    images : brightfield images ``(Y, X)`` (or ``(C, Y, X)``), one per annotated field
    labels : instance labels ``(Y, X)`` of each image (0 = background)
    out : the checkpoint to write (``.pt``); the loss CSV / PNG and ``<stem>_eval/`` (report,
        PR curve) are written beside it
    classes : per image, ``{label_id: class name}`` (e.g. from a Labels layer's features), or
        None: every cell is ``class_names[0]``
    class_names : the classes to learn
    init : ``"compact"`` (the bundled model), a checkpoint path, or None (from scratch, ``preset``)
    iters, batch_size, device, seed : as :func:`napari_hrs.train.fit` (AdamW)
    lr : base learning rate; default 2e-4 when starting from weights (``init``: fine-tuning must
        not wipe out what the model knows), 1e-3 from scratch
    crop : crop side, pixels; val_fraction : share of the crops held out for evaluation
    progress : ``(done, total)``; training iterations then evaluated crops, as one count
    cancel : return True to stop; training stops at the last completed iteration
        (:class:`~napari_hrs.errors.Cancelled` is raised, the checkpoint stays usable)
    """
    from napari_hrs.train import evaluate, fit
    from napari_hrs.train.dataset import InstanceDataset, split_dataset

    if len(images) != len(labels) or not len(images):
        raise DatasetError(f"got {len(images)} images and {len(labels)} label arrays; pass one "
                           "instance-labels array per image (at least one)")  # fmt: skip
    names = [str(c) for c in class_names]
    per_image = classes if classes is not None else [None] * len(images)
    crops_i, crops_l, crops_c = [], [], []
    for img, lab, cls in zip(images, labels, per_image, strict=True):
        lab = np.asarray(lab)
        ids = np.unique(lab[lab > 0])
        mapping = {int(i): (cls or {}).get(int(i), names[0]) for i in ids}
        unknown = sorted({v for v in mapping.values() if v not in names})
        if unknown:
            raise DatasetError(f"labels use classes {unknown} that are not among the classes to "
                               f"learn {names}")  # fmt: skip
        for ci, cl in crop_annotations(img, lab, crop):
            crops_i.append(ci)
            crops_l.append(cl)
            crops_c.append({int(i): mapping[int(i)] for i in np.unique(cl[cl > 0])})
    if len(crops_i) < 2:
        raise DatasetError(f"only {len(crops_i)} crop(s) of {crop} px hold annotated cells; "
                           "annotate more cells (or a larger area) to train and evaluate")  # fmt: skip
    data = InstanceDataset.from_labels(crops_i, crops_l, crops_c, names)
    train, val = split_dataset(data, val_fraction, seed=seed, class_names=names)
    out = Path(out)
    total = iters + len(val)

    def fit_progress(done: int, _total: int) -> None:
        if progress is not None:
            progress(done, total)

    def eval_progress(done: int, _total: int) -> None:
        if progress is not None:
            progress(iters + done, total)

    if lr is None:
        lr = 2e-4 if init is not None else 1e-3
    fit(train, out=out, class_names=names, preset=preset, init=init, iters=iters,
        batch_size=batch_size, lr=lr, optimizer="adamw", warmup=max(1, min(50, iters // 5)),
        device=device, seed=seed, checkpoint_every=max(50, iters // 4),
        augment=_augment(crop), num_workers=0, progress=fit_progress, cancel=cancel)  # fmt: skip
    eval_dir = out.with_name(out.stem + "_eval")
    report = evaluate(out, val, device=device, out_dir=eval_dir, progress=eval_progress,
                      cancel=cancel)  # fmt: skip
    return FinetuneResult(out, report, eval_dir, len(train), len(val))


def _augment(crop: int) -> Any:
    from napari_hrs.train.augment import AugmentConfig

    return AugmentConfig(crop_size=crop)
