"""Detection plus marker quantification for one acquisition: the whole job, headless.

:func:`run_pipeline` is what ``napari-hrs demo`` runs and what a batch worker runs per
acquisition: detect hRS on the brightfield channel (:func:`napari_hrs.engine.detect`), measure
PRM1 / PNA per detected cell (:func:`napari_hrs.markers.quantify_acquisition`), call marker
positivity and summarise (the paper's statistic: the fraction of detected hRS that are PRM1+
and/or PNA+). Results are written next to the detection result: ``cells.csv`` (one row per
detected cell, pixel and µm columns) and ``summary.json``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from napari_hrs.io.export._atomic import atomic_target

Progress = Callable[[int, int], None]


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` produced.

    Attributes
    ----------
    detection : DetectionResult
        The labels (lazy, (Y, X)) and the instance table, as written on disk.
    cells : DataFrame
        One row per detected cell: detection columns (``label_id``, ``class_name``, ``score``,
        box and centroid in pixels and µm) joined with marker measures and calls
        (``PRM1_positive``, ``PNA_positive``, ``category``). Empty markers columns when the
        acquisition has no marker channel.
    summary : dict
        From :func:`napari_hrs.markers.summarize` (counts, fractions, thresholds), plus
        ``n_detections``.
    markers : tuple of str
        The marker roles that were quantified.
    """

    detection: Any
    cells: pd.DataFrame
    summary: dict[str, Any]
    markers: tuple[str, ...] = field(default_factory=tuple)

    def summary_text(self) -> str:
        """A few human-readable lines: detections, marker categories, the paper's statistic."""
        from napari_hrs.markers import format_summary

        head = f"{len(self.cells)} cells detected -> {self.detection.path}"
        if self.summary.get("status") != "complete":
            return head + f"\n(detection {self.summary.get('status')}: markers not quantified)"
        if not self.markers:
            return head + "\n(no PRM1 / PNA channel: markers not quantified)"
        if len(self.cells) == 0:
            return head
        return head + "\n" + format_summary(self.summary)


def run_pipeline(
    acquisition: Any,
    model: Any = "compact",
    *,
    out: str | Path | None = None,
    tile: int = 1024,
    batch: int | None = None,
    score_threshold: float = 0.5,
    device: str | None = None,
    marker_method: str = "otsu",
    ring_px: tuple[int, int] = (2, 6),
    overwrite: bool = False,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> PipelineResult:
    """Detect hRS in ``acquisition`` and quantify PRM1 / PNA in every detected cell.

    Parameters
    ----------
    acquisition : Acquisition or path
        Opened with :func:`napari_hrs.io.open_acquisition` when a path.
    model : str, path or loaded model
        ``"compact"`` (bundled), a checkpoint path, or anything
        :func:`napari_hrs.engine.detect` accepts.
    out : path, optional
        The detection result store (``RESULT.zarr``); default as :func:`~napari_hrs.engine.detect`
        (``labels/detections`` inside a writable OME-Zarr).
    tile, batch, score_threshold, device
        Passed to :func:`~napari_hrs.engine.detect` (tile in pixels).
    marker_method : {"otsu", "background_sd"}
        Positivity call (see :func:`napari_hrs.markers.call_positive`).
    ring_px : (gap, width)
        Background ring around each cell, in pixels.
    progress : callable, optional
        ``progress(done, total)``: detection tiles first, then quantification tiles, as one
        count (detection is weighted 4:1).
    cancel : callable, optional
        Return True to stop (detection then leaves an incomplete result, quantification is
        skipped).
    """
    from napari_hrs.engine.detect import detect
    from napari_hrs.io import open_acquisition

    acq = acquisition if hasattr(acquisition, "channel") else open_acquisition(acquisition)

    def stage(offset: int, weight: int) -> Progress | None:
        if progress is None:
            return None
        return lambda done, total: progress(offset + weight * done // max(total, 1), 500)

    result = detect(
        acq,
        model,
        tile=tile,
        batch=batch,
        out=out,
        score_threshold=score_threshold,
        device=device,
        overwrite=overwrite,
        progress=stage(0, 400),
        cancel=cancel,
    )
    cells, summary, markers = measure_cells(acq, result, marker_method=marker_method,
                                            ring_px=ring_px, progress=stage(400, 100),
                                            cancel=cancel)  # fmt: skip
    write_cell_tables(Path(result.path), cells, summary)
    if progress is not None:
        progress(500, 500)
    return PipelineResult(detection=result, cells=cells, summary=summary, markers=markers)


def measure_cells(
    acq: Any,
    result: Any,
    *,
    marker_method: str = "otsu",
    ring_px: tuple[int, int] = (2, 6),
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any], tuple[str, ...]]:
    """PRM1 / PNA per detected cell of a detection ``result`` on ``acq``.

    Returns ``(cells, summary, markers)``: the detection table (``label_id``, class, score,
    box and centroid in pixels and µm) joined with the marker measures and calls, the
    :func:`~napari_hrs.markers.summarize` dict plus ``n_detections`` and ``status``, and the
    marker roles measured. Markers are skipped (detection columns only, empty summary) when the
    result is incomplete, has no cells, or the acquisition has no PRM1 / PNA channel.
    """
    from napari_hrs.markers import call_markers, quantify_acquisition, summarize

    det = result.table.rename(columns={"id": "label_id"})
    markers = tuple(m for m in ("PRM1", "PNA") if acq.has_role(m))
    if not result.complete or not markers or det.empty:
        cells, summary = det, {}
    else:
        # the detection boxes hold each cell's pixels: no labels pass (checked as they stream)
        measured = quantify_acquisition(
            acq, result.labels, markers=markers, ring_px=ring_px, progress=progress,
            cancel=cancel, boxes=result.table,
        )  # fmt: skip
        keep = [c for c in measured.columns if c not in det.columns or c == "label_id"]
        cells = det.merge(measured[keep], on="label_id", how="left")
        cells = call_markers(cells, marker_method, markers=list(markers))
        summary = summarize(cells)
    summary["n_detections"] = len(det)
    summary["status"] = result.status
    return cells, summary, markers


def write_cell_tables(result_path: Path, cells: pd.DataFrame, summary: dict[str, Any]) -> None:
    """Write ``cells.csv`` and ``summary.json`` into the result folder, atomically."""
    for name, write in (
        ("cells.csv", lambda f: cells.to_csv(f, index=False)),
        ("summary.json", lambda f: json.dump(summary, f, indent=2, default=_jsonable)),
    ):
        with atomic_target(result_path / name, overwrite=True) as tmp, \
                open(tmp, "w", newline="") as f:  # fmt: skip
            write(f)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def run_pipeline_on_sample(path: str | Path | None = None, **kwargs: Any) -> PipelineResult:
    """:func:`run_pipeline` on ``path`` (default: the bundled sample acquisition), writing the
    result to a fresh temporary folder so the sample itself is never modified."""
    from napari_hrs.synth.sample import sample_path

    source = Path(path) if path is not None else sample_path()
    out = Path(tempfile.mkdtemp(prefix="napari-hrs-demo-")) / "result.zarr"
    return run_pipeline(source, out=out, **kwargs)
