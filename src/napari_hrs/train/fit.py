"""Train a Cascade Mask R-CNN on an instance dataset: :func:`fit`.

Files written (``out`` = ``model.pt``):

- ``model.pt`` every ``checkpoint_every`` iterations and at the end, atomically, in our
  checkpoint format (:func:`napari_hrs.engine.checkpoint.save_checkpoint`) with provenance (data
  hash, config, code version, iteration, hyper-parameters, training time) and, in
  ``extra["train_state"]``, the optimizer state and schedule for ``resume``;
- ``model.losses.csv`` (iteration, lr, every loss, seconds per iteration) and
  ``model.losses.png``;
- ``model.val.json``: the latest validation report, when ``val_data`` is given.

The run is deterministic given ``seed`` (see :mod:`napari_hrs.train.trainer`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from napari_hrs.errors import CheckpointError, DatasetError
from napari_hrs.train.augment import AugmentConfig
from napari_hrs.train.dataset import InstanceDataset
from napari_hrs.train.loader import IterationBatches, default_num_workers, make_loader
from napari_hrs.train.trainer import Trainer, lr_at, sibling

__all__ = ["fit", "lr_at", "sibling"]


def _as_dataset(data: InstanceDataset | str | Path) -> InstanceDataset:
    return data if isinstance(data, InstanceDataset) else InstanceDataset.from_coco(data)


def _transfer(src_state: Mapping[str, Any], model) -> list[str]:
    """Copy the tensors of ``src_state`` whose name and shape match into ``model``; return the
    names left at their fresh initialisation (e.g. class-specific heads)."""
    own = model.state_dict()
    same = {
        k: v for k, v in src_state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)
    }
    model.load_state_dict(same, strict=False)
    return sorted(set(own) - set(same))


def _build(preset: str, class_names, init, overrides, resume_from: Path | None):
    """(model, cfg, train_state or None, note) for a fresh, initialised or resumed run."""
    from napari_hrs.engine.checkpoint import load_checkpoint, load_model
    from napari_hrs.engine.config import get_preset
    from napari_hrs.engine.model import build_model

    if resume_from is not None:
        loaded = load_checkpoint(resume_from)
        state = loaded.meta.get("extra", {}).get("train_state")
        if state is None:
            raise CheckpointError(
                f"{resume_from} has no training state (a final checkpoint saved without it, or "
                "not written by napari-hrs train); start a new run, passing it as init="
            )
        note = loaded.meta.get("provenance", {}).get("init", "")
        return loaded.model, loaded.cfg, state, note
    try:
        if init is None:
            cfg = get_preset(preset, class_names=tuple(class_names))
        else:
            src = load_model(init)
            cfg = src.cfg.override({"class_names": list(class_names)})
        if overrides:
            cfg = cfg.override(dict(overrides))
    except CheckpointError:
        raise
    except ValueError as exc:
        raise ValueError(f"invalid model config: {exc}") from exc
    model = build_model(cfg)
    if init is None:
        return model, cfg, None, f"{cfg.name} preset, random init"
    fresh = _transfer(src.model.state_dict(), model)
    return model, cfg, None, f"init from {init} ({len(fresh)} tensors freshly initialised)"


def fit(
    train_data: InstanceDataset | str | Path,
    *,
    out: str | Path,
    val_data: InstanceDataset | str | Path | None = None,
    class_names: Sequence[str] | None = None,
    preset: str = "compact",
    init: str | Path | None = None,
    iters: int | None = None,
    batch_size: int = 4,
    lr: float | None = None,
    optimizer: str = "sgd",
    weight_decay: float = 1e-4,
    warmup: int = 100,
    schedule: str = "cosine",
    steps: Sequence[float] = (0.7, 0.9),
    grad_clip: float = 10.0,
    augment: AugmentConfig | None = AugmentConfig(),  # noqa: B008 - frozen dataclass
    amp: bool = True,
    device: str | None = None,
    seed: int = 0,
    checkpoint_every: int = 200,
    resume: bool = False,
    num_workers: int | None = None,
    threads: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    keep_train_state: bool = True,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_log: Callable[[int, dict], None] | None = None,
) -> Path:
    """Train a model and write it to ``out``; return ``out``.

    Parameters
    ----------
    train_data : an :class:`InstanceDataset` or a COCO JSON path
    out : the checkpoint path (``.pt``); the loss CSV / PNG are written beside it
    val_data : validation set, evaluated at every checkpoint (COCO AP, look-alike rate)
    class_names : categories to learn (default: every category of ``train_data``); instances of
        other categories are background
    preset : ``"compact"`` or ``"paper"`` (ignored with ``init`` or ``resume``)
    init : start from these weights (our checkpoint, a detectron2 .pth/.pkl, or ``"compact"``);
        its architecture is kept, tensors whose shape differs (class-specific layers when the
        classes change) are freshly initialised
    iters : total iterations (default 2000; on resume, the resumed run's unless given)
    batch_size : images per iteration
    lr : base learning rate (default 0.02 for SGD, 1e-3 for AdamW)
    optimizer : ``"sgd"`` (momentum 0.9) or ``"adamw"``
    weight_decay : L2 / decoupled weight decay (not on biases and norms)
    warmup, schedule, steps : see :func:`lr_at`
    grad_clip : maximal gradient norm (0 disables clipping)
    augment : augmentation strengths (None: none); ``crop_size`` sets the training image size
    amp : mixed precision on CUDA (ignored on CPU)
    device : ``"cpu"``, ``"cuda"``...; default CUDA when available
    seed : makes the run reproducible (image order, augmentation, RoI sampling)
    checkpoint_every : write ``out`` every this many iterations (0: only at the end)
    resume : continue from the checkpoint at ``out`` (iteration, optimizer, hyper-parameters)
    num_workers : data loader processes (default: one per spare core, at most 4)
    threads : torch threads while training (default: the cores the loader leaves, >= 1);
        oversubscribed cores slow CPU training several-fold
    overrides : dotted model-config keys, e.g. ``{"roi_heads.batch_size_per_image": 64}``
    keep_train_state : keep the optimizer state in the final checkpoint (needed to resume or
        extend the run; False roughly halves the file, for shipping)
    progress, cancel, on_log : (iterations done, total) / return True to stop /
        ``(iteration, row)`` with every loss, ``lr`` and ``time_s`` after each iteration

    Raises
    ------
    Cancelled
        When ``cancel()`` returned True or on KeyboardInterrupt: ``out`` then holds the last
        completed iteration and can be resumed.
    DatasetError, CheckpointError, FileNotFoundError
        Bad data, a resume without checkpoint, or data that differ from the resumed run's.
    """
    import torch

    from napari_hrs import __version__

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    train_ds = _as_dataset(train_data)
    val_ds = _as_dataset(val_data) if val_data is not None else None
    names = tuple(class_names) if class_names else tuple(train_ds.category_names)
    if resume and not out.is_file():
        raise FileNotFoundError(f"resume=True but there is no checkpoint at {out}; drop resume")
    torch.manual_seed(int(seed))  # the initial weights of a fresh run
    model, cfg, state, note = _build(preset, names, init, overrides, out if resume else None)
    data_hash = train_ds.fingerprint()
    if state is not None:  # the resumed run's hyper-parameters win, except a new iters
        hp = dict(state["hparams"])
        if iters is not None:
            hp["iters"] = int(iters)
        if state.get("data_hash") != data_hash:
            raise DatasetError(
                f"{out} was trained on other data (hash {str(state.get('data_hash'))[:12]}, "
                f"now {data_hash[:12]}); resume with the same dataset or start a new run"
            )
    else:
        hp = {
            "iters": 2000 if iters is None else int(iters), "batch_size": int(batch_size),
            "lr": float(lr) if lr is not None else (0.02 if optimizer == "sgd" else 1e-3),
            "optimizer": optimizer, "weight_decay": float(weight_decay), "warmup": int(warmup),
            "schedule": schedule, "steps": [float(s) for s in steps],
            "grad_clip": float(grad_clip), "seed": int(seed),
            "augment": augment.to_dict() if augment is not None else None, "amp": bool(amp),
        }  # fmt: skip
        lr_at(0, hp["lr"], hp["iters"], hp["warmup"], hp["schedule"], hp["steps"])  # validates
    aug = AugmentConfig(**_tuples(hp["augment"])) if hp["augment"] is not None else None
    start = int(state["iteration"]) if state is not None else 0
    if start >= hp["iters"]:
        return out

    workers = default_num_workers() if num_workers is None else int(num_workers)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads) if threads else max(1, (os.cpu_count() or 1) - workers))
    try:
        trainer = Trainer(
            model=model,
            cfg=cfg,
            out=out,
            device=torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")),
            hparams=hp,
            provenance={
                "data_hash": data_hash,
                "data_source": train_ds.source,
                "n_images": len(train_ds),
                "class_names": list(cfg.class_names),
                "code_version": __version__,
                "torch_version": str(torch.__version__),
                "hparams": hp,
                "init": note,
                "config_name": cfg.name,
            },  # fmt: skip
            start=start,
            state=state,
            val_data=val_ds,
            keep_train_state=keep_train_state,
        )
        batches = IterationBatches(
            train_ds, cfg.class_names, int(cfg.input_channels), hp["batch_size"], hp["seed"],
            start, hp["iters"], aug,
        )  # fmt: skip
        return trainer.run(
            make_loader(batches, workers), checkpoint_every, progress, cancel, on_log
        )
    finally:
        torch.set_num_threads(old_threads)


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
