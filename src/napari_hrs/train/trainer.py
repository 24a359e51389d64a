"""The training loop behind :func:`napari_hrs.train.fit`: schedule, optimizer, loss log,
checkpoints with resumable state, validation.

Determinism: torch's generator is re-seeded from ``(seed, iteration)`` before every iteration
(RoI / anchor sampling), and the batches themselves depend only on ``(seed, iteration)``
(:mod:`napari_hrs.train.loader`), so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrs.errors import Cancelled

__all__ = ["LossLog", "Trainer", "lr_at", "make_optimizer", "sibling"]


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
    """Learning rate at iteration ``it`` (0-based).

    Linear warm-up from 0.1 % of ``base_lr`` over ``warmup`` iterations, then cosine decay to
    1 % at ``iters`` (``"cosine"``), a decay by ``gamma`` at each fraction ``steps`` of
    ``iters`` (``"steps"``), or ``"constant"``.
    """
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


def make_optimizer(model, name: str, lr: float, weight_decay: float):
    """SGD (momentum 0.9) or AdamW; no weight decay on biases and norm parameters."""
    import torch

    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if p.requires_grad:
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


class LossLog:
    """The loss CSV: one row per iteration. On resume, rows after ``start`` are dropped."""

    def __init__(self, path: Path, start: int) -> None:
        self.path, self.fields = path, None
        rows = []
        if start > 0 and path.is_file():
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["iteration"]) <= start]
        with open(path, "w", newline="") as fh:
            if rows:
                self.fields = list(rows[0])
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


@dataclass
class Trainer:
    """State of one training run; :meth:`run` trains from ``start`` to ``hparams["iters"]``."""

    model: Any
    cfg: Any
    out: Path
    device: Any
    hparams: dict
    provenance: dict
    start: int = 0
    state: dict | None = None  # train_state of a resumed checkpoint
    val_data: Any = None
    keep_train_state: bool = True
    history: list = field(default_factory=list)

    def __post_init__(self) -> None:
        import torch

        h = self.hparams
        self.model.to(self.device).train()
        self.opt = make_optimizer(self.model, h["optimizer"], h["lr"], h["weight_decay"])
        self.use_amp = bool(h.get("amp") and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.elapsed0 = 0.0
        if self.state is not None:
            self.opt.load_state_dict(self.state["optimizer"])
            if self.use_amp and self.state.get("scaler"):
                self.scaler.load_state_dict(self.state["scaler"])
            self.history = list(self.state.get("val_history", []))
            self.elapsed0 = float(self.state.get("train_time_s", 0.0))
        self.t0 = time.perf_counter()

    def lr(self, it: int) -> float:
        h = self.hparams
        return lr_at(it, h["lr"], h["iters"], h["warmup"], h["schedule"], h["steps"])

    # ---- checkpoints and validation
    def save(self, iteration: int, final: bool = False) -> None:
        """Write the checkpoint at ``out`` (atomically) with provenance and resumable state."""
        from napari_hrs.engine.checkpoint import save_checkpoint

        elapsed = self.elapsed0 + time.perf_counter() - self.t0
        prov = dict(self.provenance, iteration=iteration, train_time_s=round(elapsed, 1))
        prov["val"] = self.history[-1] if self.history else None
        extra = {}
        if self.keep_train_state or not final:
            extra["train_state"] = {
                "iteration": iteration,
                "hparams": self.hparams,
                "data_hash": self.provenance["data_hash"],
                "optimizer": self.opt.state_dict(),
                "scaler": self.scaler.state_dict() if self.use_amp else None,
                "lr": self.lr(iteration),
                "val_history": self.history,
                "train_time_s": elapsed,
            }
        training = self.model.training
        self.model.eval()
        save_checkpoint(self.out, self.model, self.cfg, provenance=prov, extra=extra)
        self.model.train(training)

    def validate(self, iteration: int) -> None:
        """Evaluate on ``val_data`` (if any); the report goes to ``<out>.val.json``."""
        if self.val_data is None:
            return
        from napari_hrs.engine.checkpoint import Loaded
        from napari_hrs.train.evaluate import evaluate

        rep = evaluate(Loaded(self.model, self.cfg), self.val_data, device=str(self.device))
        self.model.train()
        self.history.append(
            {
                "iteration": iteration,
                "segm_AP": rep.segm["AP"],
                "segm_AP50": rep.segm["AP50"],
                "bbox_AP": rep.bbox["AP"],
                "lookalike_rate": rep.meta["lookalike_rate"],
            }
        )
        rep.meta["iteration"] = iteration
        rep.save_json(sibling(self.out, ".val.json"))

    # ---- the loop
    def step(self, it: int, images, targets) -> dict:
        """One optimisation step; returns the loss row for the CSV."""
        import torch

        h = self.hparams
        t = time.perf_counter()
        torch.manual_seed(int(np.random.default_rng([h["seed"], it, 104729]).integers(2**62)))
        lr = self.lr(it)
        for g in self.opt.param_groups:
            g["lr"] = lr
        images = images.to(self.device, non_blocking=True)
        targets = [{k: v.to(self.device) for k, v in tg.items()} for tg in targets]
        with torch.autocast(self.device.type, enabled=self.use_amp):
            losses = self.model(images, targets)
        total = sum(losses.values())
        if not torch.isfinite(total):
            values = {k: round(float(v), 4) for k, v in losses.items()}
            raise FloatingPointError(
                f"loss is {float(total)} at iteration {it} ({values}); lower the learning "
                f"rate (now {lr:g}), raise the warm-up or keep grad clipping on"
            )
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if h["grad_clip"] and h["grad_clip"] > 0:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), h["grad_clip"])
        self.scaler.step(self.opt)
        self.scaler.update()
        row = {"iteration": it + 1, "lr": lr, "total": float(total.detach())}
        row.update({k: float(v.detach()) for k, v in losses.items()})
        row["time_s"] = round(time.perf_counter() - t, 4)
        return row

    def run(
        self,
        loader,
        checkpoint_every: int,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        on_log: Callable[[int, dict], None] | None = None,
    ) -> Path:
        """Train over ``loader`` (one batch per iteration from ``start``); checkpoint every
        ``checkpoint_every`` iterations and at the end. On cancel or KeyboardInterrupt, the last
        completed iteration is saved and :class:`Cancelled` raised."""
        iters = self.hparams["iters"]
        log = LossLog(sibling(self.out, ".losses.csv"), self.start)
        done = self.start
        try:
            for k, (images, targets) in enumerate(loader):
                if cancel is not None and cancel():
                    raise Cancelled(f"training cancelled at iteration {done}")
                row = self.step(self.start + k, images, targets)
                done = self.start + k + 1
                log.write(row)
                if on_log is not None:
                    on_log(done, row)
                if progress is not None:
                    progress(done, iters)
                if checkpoint_every and done % checkpoint_every == 0 and done < iters:
                    self.validate(done)
                    self.save(done)
        except (Cancelled, KeyboardInterrupt):
            self.save(done)
            plot(self.out)
            raise Cancelled(
                f"training stopped at iteration {done} of {iters}; {self.out} holds that "
                "checkpoint (continue with resume=True / --resume)"
            ) from None
        self.validate(done)
        self.save(done, final=True)
        plot(self.out)
        return self.out


def plot(out: Path) -> None:
    """Plot ``<out>.losses.csv`` to ``<out>.losses.png``."""
    from napari_hrs.train.plots import plot_losses

    csv_path = sibling(out, ".losses.csv")
    if csv_path.is_file() and csv_path.stat().st_size:
        plot_losses(csv_path, sibling(out, ".losses.png"))
