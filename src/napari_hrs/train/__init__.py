"""Training and evaluation: datasets (COCO <-> napari labels), augmentation, :func:`fit`,
:func:`evaluate` (pycocotools COCOeval, look-alike confusion, marker concordance).

torch is imported only when training or evaluating. Note that :func:`fit` and :func:`evaluate`
shadow the submodules of the same name as attributes of this package: import module contents
with ``from napari_hrs.train.evaluate import evaluate_detections``.
"""

from __future__ import annotations

from napari_hrs.train.augment import AugmentConfig, augment
from napari_hrs.train.dataset import (
    InstanceDataset,
    Sample,
    coco_to_labels,
    labels_to_coco,
    split_dataset,
    write_coco,
)
from napari_hrs.train.evaluate import EvalReport, evaluate, evaluate_detections
from napari_hrs.train.finetune import FinetuneResult, crop_annotations, finetune_on_labels
from napari_hrs.train.fit import fit

__all__ = [
    "AugmentConfig",
    "EvalReport",
    "FinetuneResult",
    "InstanceDataset",
    "Sample",
    "augment",
    "coco_to_labels",
    "crop_annotations",
    "evaluate",
    "evaluate_detections",
    "finetune_on_labels",
    "fit",
    "labels_to_coco",
    "split_dataset",
    "write_coco",
]
