"""Counts per marker category and the paper's validation statistic.

The paper validated every cell its model selected with PRM1 and PNA staining and reported the
fraction of selected hRS that are PRM1+ and/or PNA+. :func:`summarize` gives that fraction
(``fraction_marker_positive``, over ``n_cells``) from a table of
:func:`napari_hrs.markers.call_markers`, restricted to the cells detected as hRS when the table
carries a detection class column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from napari_hrs.markers.positivity import CATEGORIES

__all__ = ["HRS_CLASS_NAMES", "format_summary", "summarize"]

#: detection class names that count as round spermatids (compared case-insensitively)
HRS_CLASS_NAMES: tuple[str, ...] = ("hRS", "round_spermatid", "round spermatid", "spermatid")


def _fraction(n: int, d: int) -> float:
    return float(n) / d if d else float("nan")


def summarize(
    table: pd.DataFrame,
    *,
    hrs_only: bool = True,
    class_column: str = "class_name",
    hrs_classes: Sequence[str] = HRS_CLASS_NAMES,
) -> dict[str, Any]:
    """Count cells per marker category and compute the fraction that is marker-positive.

    Parameters
    ----------
    table : DataFrame
        From :func:`napari_hrs.markers.call_markers` (needs ``PRM1_positive``, ``PNA_positive``).
    hrs_only : bool
        Count only the rows whose ``class_column`` is one of ``hrs_classes``. Tables without that
        column (e.g. labels from a ground truth or a hand annotation) are counted whole; the
        returned ``"population"`` says which was done.
    class_column : str
        Detection class column (joined from a detection table).
    hrs_classes : sequence of str
        Class names meaning hRS (case-insensitive).

    Returns
    -------
    dict
        ``n_cells`` (cells counted), ``n_total`` (rows in the table), ``population``,
        ``counts`` and ``fractions`` per category (:data:`CATEGORIES`), ``fraction_PRM1_positive``,
        ``fraction_PNA_positive``, ``fraction_both``, ``fraction_neither``,
        ``n_marker_positive`` and ``fraction_marker_positive`` (PRM1+ and/or PNA+: the paper's
        statistic), ``markers`` (those called) and ``thresholds`` (from ``table.attrs``).
        Fractions are NaN when no cell is counted. When only one marker was called (its
        ``thresholds`` entry alone), the other's fraction and the four categories (which need
        both) are NaN / None, and ``n_marker_positive`` counts the cells positive for the
        called marker.
    """
    missing = [c for c in ("PRM1_positive", "PNA_positive") if c not in table.columns]
    if missing:
        raise ValueError(
            f"the table has no {missing} column(s); call napari_hrs.markers.call_markers(table) "
            "first (or pass --method to the CLI)."
        )
    rows = table
    population = f"all {len(table)} cells"
    if hrs_only and class_column in table.columns:
        wanted = {c.lower() for c in hrs_classes}
        keep = table[class_column].astype(str).str.lower().isin(wanted)
        rows = table[keep.to_numpy()]
        population = f"{class_column} in {sorted(set(table[class_column][keep].astype(str)))}"
    elif hrs_only:
        population += f" (no {class_column!r} column: every labelled cell counted)"
    thresholds = dict(table.attrs.get("thresholds", {}))
    called = [m for m in ("PRM1", "PNA") if m in thresholds] or ["PRM1", "PNA"]
    prm1 = rows["PRM1_positive"].to_numpy(dtype=bool)
    pna = rows["PNA_positive"].to_numpy(dtype=bool)
    n = len(rows)
    both = len(called) == 2
    counts: dict[str, int | None] = {
        "PRM1+PNA+": int(np.sum(prm1 & pna)),
        "PRM1+": int(np.sum(prm1 & ~pna)),
        "PNA+": int(np.sum(~prm1 & pna)),
        "neither": int(np.sum(~prm1 & ~pna)),
    }
    if not both:  # a category needs both calls
        counts = dict.fromkeys(counts)
    n_pos = int(np.sum((prm1 & ("PRM1" in called)) | (pna & ("PNA" in called))))
    nan = float("nan")
    return {
        "n_cells": n,
        "n_total": len(table),
        "population": population,
        "markers": called,
        "counts": {c: counts[c] for c in CATEGORIES},
        "fractions": {c: nan if counts[c] is None else _fraction(counts[c], n) for c in CATEGORIES},
        "fraction_PRM1_positive": _fraction(int(prm1.sum()), n) if "PRM1" in called else nan,
        "fraction_PNA_positive": _fraction(int(pna.sum()), n) if "PNA" in called else nan,
        "fraction_both": _fraction(counts["PRM1+PNA+"], n) if both else nan,
        "fraction_neither": _fraction(counts["neither"], n) if both else nan,
        "n_marker_positive": n_pos,
        "fraction_marker_positive": _fraction(n_pos, n),
        "thresholds": thresholds,
    }


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:.1f}%"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few lines of text (what the CLI prints)."""
    n = summary["n_cells"]
    lines = [f"cells counted: {n} of {summary['n_total']} ({summary['population']})"]
    called = summary.get("markers", ["PRM1", "PNA"])
    if len(called) == 2:
        for cat in CATEGORIES:
            lines.append(f"  {cat:<10} {summary['counts'][cat]:>7}  {_pct(summary['fractions'][cat])}")  # fmt: skip
        lines.append(
            f"PRM1+: {_pct(summary['fraction_PRM1_positive'])}   "
            f"PNA+: {_pct(summary['fraction_PNA_positive'])}"
        )
    missing = [m for m in ("PRM1", "PNA") if m not in called]
    lines.append(
        f"{' and/or '.join(m + '+' for m in called)}: {summary['n_marker_positive']} / {n} = "
        f"{_pct(summary['fraction_marker_positive'])}"
        + (f"   ({', '.join(missing)} not measured)" if missing else "")
    )
    for m, t in summary["thresholds"].items():
        thr = t.get("threshold", float("nan"))
        what = f"k = {thr:g}" if t.get("method") == "background_sd" else f"threshold = {thr:.4g}"
        lines.append(f"threshold {m}: {t.get('method')} ({t.get('measure')}), {what}")
    return "\n".join(lines)
