"""Train a Cascade Mask R-CNN on an instance dataset: :func:`fit`.

The loop is deterministic given ``seed``: batches and augmentations are functions of
``(seed, iteration)`` (:mod:`napari_hrs.train.loader`) and torch's generator is re-seeded at
every iteration, so a run resumed from a checkpoint continues exactly as an uninterrupted run.

Files written (``out`` = ``model.pt``):

- ``model.pt`` every ``checkpoint_every`` iterations and at the end, atomically, in our
  checkpoint format (:func:`napari_hrs.engine.checkpoint.save_checkpoint`) with provenance (data
  hash, config, code version, iteration) and, in ``extra["train_state"]``, the optimizer state
  and the schedule for ``resume``;
- ``model.losses.csv`` (iteration, lr, every loss) and ``model.losses.png``;
- ``model.val.json`` with the validation report when ``val_data`` is given.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from napari_hrs.errors import Cancelled, CheckpointError, DatasetError
from napari_hrs.train.augment import AugmentConfig
from napari_hrs.train.dataset import InstanceDataset
from napari_hrs.train.loader import IterationBatches, make_loader

__all__ = ["fit", "lr_at", "sibling"]


def sibling(out: str | Path, suffix: str) -> Path:
    """``model.pt`` -> ``model<suffix>`` (e.g. ``.losses.csv``)."""
    out = Path(out)
    return out.with_name(out.stem + suffix)


def lr_at(
    it: int,
    base_lr: float,
    iters: int,
    warmup: int = 0,
    schedule: str = "cosine",
    steps: Sequence[float] = (0.7, 0.9),
    gamma: float = 0.1,
) -> float:
    """Learning rate at iteration ``it`` (0-based): linear warm-up from 0.1 % of ``base_lr``
    over ``warmup`` iterations, then cosine decay to 1 % (``"cosine"``) or a step decay by
    ``gamma`` at the fractions ``steps`` of ``iters`` (``"steps"``)."""
    if schedule == "cosine":
        frac = min(1.0, it / max(1, iters))
        factor = 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * frac))
    elif schedule == "steps":
        factor = gamma ** sum(it >= int(s * iters) for s in steps)
    elif schedule == "constant":
        factor = 1.0
    else:
        raise ValueError(f"unknown schedule {schedule!r}; use 'cosine', 'steps' or 'constant'")
    if warmup > 0 and it < warmup:
        alpha = it / warmup
        factor *= 0.001 * (1.0 - alpha) + alpha
    return base_lr * factor


def _as_dataset(data: InstanceDataset | str | Path) -> InstanceDataset:
    return data if isinstance(data, InstanceDataset) else InstanceDataset.from_coco(data)


def _make_optimizer(model, name: str, lr: float, weight_decay: float):
    import torch

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or n.endswith(".bias") else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; use 'sgd' or 'adamw'")


def _transfer(src_state: Mapping[str, Any], model) -> list[str]:
    """Copy the tensors of ``src_state`` whose name and shape match into ``model``; return the
    names left at their initial value (e.g. class-specific heads)."""
    own = model.state_dict()
    loaded = {
        k: v for k, v in src_state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)
    }
    model.load_state_dict(loaded, strict=False)
    return sorted(set(own) - set(loaded))


def _build(preset: str, class_names, init, overrides, resume_from: Path | None):
    """(model, cfg, train_state or None, init_note) for a fresh, initialised or resumed run."""
    from napari_hrs.engine.checkpoint import load_checkpoint, load_model
    from napari_hrs.engine.config import get_preset
    from napari_hrs.engine.model import build_model

    if resume_from is not None:
        loaded = load_checkpoint(resume_from)
        state = (loaded.meta.get("extra") or {}).get("train_state")
        if state is None:
            raise CheckpointError(
                f"{resume_from} has no training state (it was not written by fit, or the state "
                "was stripped); train again without resume=True or use it as init="
            )
        return loaded.model, loaded.cfg, state, f"resumed from {resume_from}"
    if init is None:
        cfg = get_preset(preset, class_names=tuple(class_names))
        if overrides:
            cfg = cfg.override(dict(overrides))
        return build_model(cfg), cfg, None, f"{preset} preset, random init"
    src = load_model(init)
    base = src.cfg.to_dict()
    cfg = type(src.cfg).from_dict(base)
    cfg = (
        cfg.override({"model.class_names": tuple(class_names)}) if hasattr(cfg, "override") else cfg
    )
    if overrides:
        cfg = cfg.override(dict(overrides))
    model = build_model(cfg)
    skipped = _transfer(src.model.state_dict(), model)
    return model, cfg, None, f"init from {init} ({len(skipped)} tensors re-initialised)"


def _class_names_of(cfg) -> tuple[str, ...]:
    return tuple(cfg.class_names) if hasattr(cfg, "class_names") else tuple(cfg.model.class_names)


def _in_channels_of(cfg) -> int:
    for path in ("in_channels", "model.in_channels", "input.channels"):
        obj = cfg
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return int(obj)
        except AttributeError:
            continue
    return 1


def _atomic_checkpoint(path: Path, model, cfg, provenance: dict, extra: dict) -> None:
    from napari_hrs.engine.checkpoint import save_checkpoint

    tmp = path.with_name(path.name + ".partial")
    save_checkpoint(tmp, model, cfg, provenance=provenance, extra=extra)
    tmp.replace(path)


class _LossLog:
    """Append-only loss CSV; on resume, rows after the resumed iteration are dropped."""

    def __init__(self, path: Path, start: int) -> None:
        self.path, self.fields = path, None
        rows = []
        if start > 0 and path.is_file():
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["iteration"]) <= start]
        if rows:
            self.fields = list(rows[0])
        with open(path, "w", newline="") as fh:
            if rows:
                w = csv.DictWriter(fh, self.fields)
                w.writeheader()
                w.writerows(rows)

    def write(self, row: dict) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


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
    out : the checkpoint path (``.pt``); loss CSV / PNG are written beside it
    val_data : optional validation set, evaluated at every checkpoint (segm / bbox AP)
    class_names : categories to learn (default: every category of ``train_data``); instances of
        other categories are background
    preset : ``"compact"`` or ``"paper"`` (ignored with ``init`` or ``resume``)
    init : start from these weights (our checkpoint, a detectron2 .pth/.pkl, or ``"compact"``);
        tensors whose shape differs (class-specific heads) keep their fresh initialisation
    iters : total iterations (default 2000; on resume, the resumed run's unless given, so a
        finished run can be extended)
    batch_size : images per iteration
    lr : base learning rate (default 0.02 for SGD, 1e-3 for AdamW)
    optimizer : ``"sgd"`` (momentum 0.9) or ``"adamw"``
    warmup, schedule, steps : see :func:`lr_at`
    grad_clip : maximal gradient norm (0 disables clipping)
    augment : augmentation strengths (None: none)
    amp : mixed precision on CUDA (ignored on CPU)
    device : ``"cpu"``, ``"cuda"``...; default CUDA when available
    seed : makes the run reproducible (image order, augmentation, RoI sampling)
    checkpoint_every : write ``out`` every this many iterations (and at the end)
    resume : continue from the checkpoint at ``out`` (its iteration, optimizer and schedule)
    num_workers : loader processes (default: one per spare core, at most 4)
    overrides : dotted model-config keys, e.g. ``{"roi_heads.batch_size_per_image": 64}``
    keep_train_state : keep the optimizer state in the final checkpoint (needed to resume or
        extend; False halves the file for shipping)
    progress, cancel, on_log : callbacks (iterations done, total) / return True to stop /
        ``(iteration, {loss name: value, "lr": lr})`` after every iteration

    Raises
    ------
    Cancelled
        When ``cancel()`` returned True (or on KeyboardInterrupt, re-raised as such); the
        checkpoint at ``out`` then holds the last completed iteration and can be resumed.
    """
    import numpy as np
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    train_ds = _as_dataset(train_data)
    val_ds = _as_dataset(val_data) if val_data is not None else None
    names = tuple(class_names) if class_names else tuple(train_ds.category_names)
    if resume and not out.is_file():
        raise FileNotFoundError(
            f"resume=True but there is no checkpoint at {out}; start without resume"
        )
    model, cfg, state, note = _build(preset, names, init, overrides, out if resume else None)
    names = _class_names_of(cfg)
    in_ch = _in_channels_of(cfg)
    if state is not None:  # the resumed run's hyper-parameters win
        h = state["hparams"]
        iters = int(h["iters"]) if iters is None else iters
        lr, optimizer, batch_size, seed = h["lr"], h["optimizer"], h["batch_size"], h["seed"]
        warmup, schedule, steps, weight_decay = (
            h["warmup"],
            h["schedule"],
            h["steps"],
            h["weight_decay"],
        )
    lr = lr if lr is not None else (0.02 if optimizer == "sgd" else 1e-3)
    iters = 2000 if iters is None else int(iters)
    start = int(state["iteration"]) if state is not None else 0

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(dev).train()
    opt = _make_optimizer(model, optimizer, lr, weight_decay)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    use_amp = bool(amp and dev.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if state is not None and state.get("scaler") and use_amp:
        scaler.load_state_dict(state["scaler"])

    hparams = {
        "iters": iters,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer,
        "weight_decay": weight_decay,
        "warmup": warmup,
        "schedule": schedule,
        "steps": list(steps),
        "grad_clip": grad_clip,
        "seed": seed,
        "augment": augment.to_dict() if augment else None,
        "init": str(init) if init else None,
    }
    data_hash = train_ds.fingerprint()
    if state is not None and state.get("data_hash") not in (None, data_hash):
        raise DatasetError(
            f"{out} was trained on different data (hash {state['data_hash'][:12]}, now "
            f"{data_hash[:12]}); resume with the same dataset or start a new run"
        )
    from napari_hrs import __version__

    history = list(state.get("val_history", [])) if state is not None else []
    elapsed0 = float(state.get("train_time_s", 0.0)) if state is not None else 0.0
    t0 = time.perf_counter()

    def save(iteration: int, final: bool = False) -> None:
        prov = {
            "data_hash": data_hash,
            "data_source": train_ds.source,
            "n_images": len(train_ds),
            "class_names": list(names),
            "iteration": iteration,
            "code_version": __version__,
            "torch_version": torch.__version__,
            "hparams": hparams,
            "init": note,
            "train_time_s": elapsed0 + time.perf_counter() - t0,
            "val": history[-1] if history else None,
        }
        tstate = {
            "iteration": iteration,
            "hparams": hparams,
            "data_hash": data_hash,
            "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict() if use_amp else None,
            "schedule": {
                "name": schedule,
                "lr": lr_at(iteration, lr, iters, warmup, schedule, steps),
            },
            "val_history": history,
            "train_time_s": prov["train_time_s"],
        }
        extra = {"train_state": tstate} if (keep_train_state or not final) else {}
        model_was_training = model.training
        model.eval()
        _atomic_checkpoint(out, model, cfg, prov, extra)
        model.train(model_was_training)

    def validate(iteration: int) -> None:
        if val_ds is None:
            return
        from napari_hrs.train.evaluate import evaluate as run_eval

        model.eval()
        rep = run_eval((model, cfg), val_ds, device=str(dev))
        model.train()
        history.append(
            {
                "iteration": iteration,
                "segm_AP": rep.segm["AP"],
                "segm_AP50": rep.segm["AP50"],
                "bbox_AP": rep.bbox["AP"],
            }
        )
        rep.save_json(sibling(out, ".val.json"))

    log = _LossLog(sibling(out, ".losses.csv"), start)
    batches = IterationBatches(train_ds, names, in_ch, batch_size, seed, start, iters, augment)
    done = start
    try:
        for k, (images, targets) in enumerate(make_loader(batches, num_workers)):
            it = start + k
            if cancel is not None and cancel():
                raise Cancelled(f"training cancelled at iteration {done}")
            torch.manual_seed(int(np.random.default_rng([seed, it, 104729]).integers(2**62)))
            cur_lr = lr_at(it, lr, iters, warmup, schedule, steps)
            for g in opt.param_groups:
                g["lr"] = cur_lr
            images = images.to(dev, non_blocking=True)
            targets = [{key: v.to(dev) for key, v in t.items()} for t in targets]
            with torch.autocast(dev.type, enabled=use_amp):
                losses = model(images, targets)
            total = sum(losses.values())
            if not torch.isfinite(total):
                raise FloatingPointError(
                    f"loss is {float(total)} at iteration {it} ({ {k: float(v) for k, v in losses.items()} }); "
                    f"lower the learning rate (now {cur_lr:g}) or raise warmup"
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            if grad_clip and grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(opt)
            scaler.update()
            done = it + 1
            row = {"iteration": done, "lr": cur_lr, "total": float(total)}
            row.update({key: float(v) for key, v in losses.items()})
            log.write(row)
            if on_log is not None:
                on_log(done, row)
            if progress is not None:
                progress(done, iters)
            if checkpoint_every and done % checkpoint_every == 0 and done < iters:
                validate(done)
                save(done)
    except (Cancelled, KeyboardInterrupt):
        save(done)
        _plot(out)
        raise Cancelled(
            f"training stopped at iteration {done} of {iters}; the checkpoint {out} holds it "
            "(continue with resume=True / --resume)"
        ) from None
    validate(done)
    save(done, final=True)
    _plot(out)
    return out


def _plot(out: Path) -> None:
    from napari_hrs.train.plots import plot_losses

    csv_path = sibling(out, ".losses.csv")
    if csv_path.is_file() and csv_path.stat().st_size:
        plot_losses(csv_path, sibling(out, ".losses.png"))
