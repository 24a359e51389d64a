"""Training and evaluation figures (matplotlib, Agg backend: no window, no Qt).

- :func:`plot_losses`: loss curves from the CSV that :func:`napari_hrs.train.fit` writes.
- :func:`plot_pr_curves`: precision-recall curves from an :class:`~napari_hrs.train.evaluate.EvalReport`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_losses", "plot_pr_curves", "read_loss_csv"]


def _figure(**kwargs):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(**kwargs)  # not pyplot: no global state, no GUI backend


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    return path


def read_loss_csv(path: str | Path) -> dict[str, np.ndarray]:
    """Columns of a loss CSV (``iteration``, ``lr``, ``total``, one column per loss) as arrays."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def _smooth(y: np.ndarray, n: int) -> np.ndarray:
    if n <= 1 or y.size < n:
        return y
    kernel = np.ones(n) / n
    pad = np.concatenate([np.full(n - 1, y[0]), y])
    return np.convolve(pad, kernel, mode="valid")


def plot_losses(csv_path: str | Path, png_path: str | Path | None = None) -> Path:
    """Plot every loss column of ``csv_path`` against the iteration (raw and smoothed).

    Returns the PNG path (default: the CSV path with suffix ``.png``).
    """
    csv_path = Path(csv_path)
    png_path = Path(png_path) if png_path is not None else csv_path.with_suffix(".png")
    cols = read_loss_csv(csv_path)
    fig = _figure(figsize=(7, 4))
    ax = fig.add_subplot(1, 1, 1)
    if cols:
        it = cols["iteration"]
        win = max(1, len(it) // 25)
        losses = [k for k in cols if k not in ("iteration", "lr", "time_s")]
        for k in losses:
            lw = 2.0 if k == "total" else 1.0
            (line,) = ax.plot(it, _smooth(cols[k], win), lw=lw, label=k)
            ax.plot(it, cols[k], lw=0.5, alpha=0.25, color=line.get_color())
        if np.all(cols["total"] > 0):
            ax.set_yscale("log")
        ax.legend(fontsize=7, ncol=2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title(f"training losses ({csv_path.name})", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, png_path)


def plot_pr_curves(report: Any, png_path: str | Path) -> Path:
    """Precision-recall curves per class (segm and bbox, IoU 0.50 / 0.75 / mean over .5:.95).

    ``report`` is an :class:`~napari_hrs.train.evaluate.EvalReport` (its ``pr_curves`` hold
    COCOeval's precision arrays (T, R, K, A, M)).
    """
    png_path = Path(png_path)
    names = list(report.per_class)
    kinds = [k for k in ("segm", "bbox") if k in report.pr_curves]
    fig = _figure(figsize=(5 * max(1, len(kinds)), 4))
    recall = np.linspace(0, 1, 101)
    for j, kind in enumerate(kinds or ["segm"]):
        ax = fig.add_subplot(1, max(1, len(kinds)), j + 1)
        prec = report.pr_curves.get(kind)
        if prec is not None:
            for k, name in enumerate(names):
                p = prec[:, :, k, 0, -1]  # (T, R)
                for t, style, lab in ((0, "-", "IoU .50"), (5, "--", "IoU .75")):
                    ax.plot(recall, np.clip(p[t], 0, None), style, label=f"{name} {lab}")
                pm = np.where(p > -1, p, np.nan)
                ax.plot(recall, np.nanmean(pm, axis=0), ":", label=f"{name} mean .50:.95")
            ax.legend(fontsize=7, loc="lower left")
        else:
            ax.text(0.5, 0.5, "no detections", ha="center", va="center")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"{kind}: AP {getattr(report, kind)['AP']:.3f}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, png_path)
