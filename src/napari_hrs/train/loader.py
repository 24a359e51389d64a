"""Turn an :class:`~napari_hrs.train.dataset.InstanceDataset` into training batches.

Every batch is a pure function of ``(seed, iteration)``: which images it holds (a seeded
permutation per epoch) and how they are augmented (a generator seeded with
``(seed, iteration, slot)``). A resumed run therefore sees exactly the batches an uninterrupted
run would have seen, and the batches can be built in any worker process, in any order.

A batch is ``(images, targets)``: ``images`` a float32 tensor ``(B, C, H, W)`` on the 0..255
scale (padded at the bottom / right with each image's median when sizes differ), ``targets`` a
list of dicts with ``boxes`` (N, 4) float32 xyxy pixels, ``classes`` (N,) int64 (0-based model
classes) and ``masks`` (N, H, W) bool, the model's training input.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from napari_hrs.engine.intensity import estimate_range
from napari_hrs.errors import DatasetError
from napari_hrs.train.augment import AugmentConfig, augment, masks_to_boxes
from napari_hrs.train.dataset import InstanceDataset, Sample, to_channels

__all__ = ["IterationBatches", "batch_indices", "default_num_workers", "make_loader", "prepare"]


def default_num_workers() -> int:
    """Loader processes: one per spare core, at most 4 (1 on a 2-core machine)."""
    return min(4, max(0, (os.cpu_count() or 1) - 1))


def prepare(
    sample: Sample, class_names: Sequence[str], in_channels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map a raw sample to model input: image ``(C, Y, X)`` float32 0..255, the masks
    ``(N, Y, X)`` of instances whose category is in ``class_names`` and their 0-based classes.

    Instances of other categories are dropped (they are background for training). The
    intensity range is estimated on the raw image, as :mod:`napari_hrs.engine.intensity`
    does at detection time.
    """
    raw = to_channels(sample.image, in_channels).astype(np.float32, copy=False)
    image = estimate_range(raw.reshape(-1, raw.shape[-1])).apply(raw)
    index = {n: i for i, n in enumerate(class_names)}
    keep = [i for i, n in enumerate(sample.category_names) if n in index]
    classes = np.array([index[sample.category_names[i]] for i in keep], np.int64)
    return image, sample.masks[keep], classes


def batch_indices(n_images: int, batch_size: int, seed: int, iteration: int) -> list[int]:
    """Dataset indices of the batch of ``iteration``: consecutive slices of one seeded
    permutation per epoch, so every image is seen once per epoch."""
    out = []
    for slot in range(batch_size):
        pos = iteration * batch_size + slot
        epoch, k = divmod(pos, n_images)
        perm = np.random.default_rng([seed, epoch, 7919]).permutation(n_images)
        out.append(int(perm[k]))
    return out


def _pad_stack(images: list[np.ndarray]) -> np.ndarray:
    h = max(im.shape[1] for im in images)
    w = max(im.shape[2] for im in images)
    out = np.empty((len(images), images[0].shape[0], h, w), np.float32)
    for i, im in enumerate(images):
        out[i] = np.median(im)
        out[i, :, : im.shape[1], : im.shape[2]] = im
    return out


class IterationBatches:
    """A map-style torch dataset whose item ``k`` is the whole batch of iteration ``start + k``.

    Parameters
    ----------
    dataset : the training images
    class_names : the model's classes (category names of ``dataset``)
    in_channels : the model's input channels
    batch_size : images per batch
    seed : base seed (image order and augmentation)
    start, stop : iterations ``start .. stop - 1``
    augment_config : augmentation strengths; None: no augmentation
    """

    def __init__(
        self,
        dataset: InstanceDataset,
        class_names: Sequence[str],
        in_channels: int,
        batch_size: int,
        seed: int,
        start: int,
        stop: int,
        augment_config: AugmentConfig | None = None,
    ) -> None:
        if len(dataset) == 0:
            raise DatasetError(f"the training dataset {dataset.source!r} has no images")
        missing = [n for n in class_names if n not in dataset.categories.values()]
        if missing:
            raise DatasetError(
                f"classes {missing} are not categories of {dataset.source or 'the dataset'} "
                f"({dataset.category_names}); pass class_names from those"
            )
        self.dataset, self.class_names, self.in_channels = dataset, list(class_names), in_channels
        self.batch_size, self.seed, self.start, self.stop = batch_size, seed, start, stop
        self.augment_config = augment_config

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __getitem__(self, k: int):
        import torch

        it = self.start + k
        images, targets = [], []
        for slot, idx in enumerate(
            batch_indices(len(self.dataset), self.batch_size, self.seed, it)
        ):
            image, masks, classes = prepare(self.dataset[idx], self.class_names, self.in_channels)
            rng = np.random.default_rng([self.seed, it, slot])
            cfg = self.augment_config or AugmentConfig.none()
            image, masks, keep = augment(image, masks, rng, cfg)
            images.append(image)
            targets.append(
                {
                    "boxes": torch.from_numpy(masks_to_boxes(masks)),
                    "classes": torch.from_numpy(classes[keep]),
                    "masks": torch.from_numpy(np.ascontiguousarray(masks)),
                }
            )
        batch = _pad_stack(images)
        h, w = batch.shape[-2:]
        for t in targets:  # pad masks to the batch size too
            m = t["masks"]
            if m.shape[-2:] != (h, w):
                padded = torch.zeros((m.shape[0], h, w), dtype=torch.bool)
                padded[:, : m.shape[1], : m.shape[2]] = m
                t["masks"] = padded
        return torch.from_numpy(batch), targets


def _worker_init(_worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)


def make_loader(batches: IterationBatches, num_workers: int | None = None):
    """A :class:`torch.utils.data.DataLoader` over whole batches, in iteration order."""
    from torch.utils.data import DataLoader

    workers = default_num_workers() if num_workers is None else int(num_workers)
    return DataLoader(
        batches,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        worker_init_fn=_worker_init if workers else None,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
