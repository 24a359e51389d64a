"""The demo viewer: an acquisition (default: the bundled sample) with hRS detections coloured by
PRM1 / PNA marker category, and the plugin's dock widgets (used by ``napari-hrs demo``).

The work itself is :func:`napari_hrs.pipeline.run_pipeline_on_sample` (core, headless); this
module only puts its results into layers. Imports napari, so it lives outside the core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_demo_viewer(
    path: str | Path | None = None,
    *,
    show: bool = True,
    detect: bool = True,
    model: Any = "compact",
    score_threshold: float = 0.5,
    widgets: bool = True,
):
    """Open napari with an acquisition, run the pipeline, show the results; return the viewer.

    Parameters
    ----------
    path : path, optional
        An acquisition; default the bundled synthetic sample.
    show : bool
        Show the window (False for tests).
    detect : bool
        Run detection + marker quantification (the bundled model) and add the results.
    model : str or path
        The model for detection (``"compact"`` = bundled).
    score_threshold : float
        Detection score threshold (0..1).
    widgets : bool
        Dock the Markers and Compare widgets.
    """
    # torchvision must be imported before an OpenGL context exists (see avoid_triton_crash)
    from napari_hrs._widgets._common import avoid_triton_crash

    avoid_triton_crash()
    import napari

    from napari_hrs._napari.reader import acquisition_layers
    from napari_hrs.io import open_acquisition
    from napari_hrs.synth.sample import sample_path

    source = Path(path) if path is not None else sample_path()
    acq = open_acquisition(source, strict=False)
    viewer = napari.Viewer(title=f"napari-hrs demo: {source.name}", show=show)
    for data, kwargs, layer_type in acquisition_layers(acq):
        layer = viewer._add_layer_from_data(data, kwargs, layer_type)
        for lyr in layer if isinstance(layer, list) else [layer]:
            if lyr.name == "ground_truth":  # synthetic truth: keep it, but out of the way
                lyr.visible = False
    if detect:
        from napari_hrs.errors import CheckpointError

        try:
            add_pipeline_result(viewer, acq, model=model, score_threshold=score_threshold)
        except CheckpointError as exc:  # e.g. no bundled weights in this install
            print(f"demo: detection skipped: {exc}")
            viewer.status = f"detection skipped: {exc}"
    if widgets:
        from napari_hrs._widgets._compare import CompareWidget
        from napari_hrs._widgets._markers import MarkersWidget

        viewer.window.add_dock_widget(MarkersWidget(viewer), name="PRM1 / PNA markers")
        viewer.window.add_dock_widget(CompareWidget(viewer), name="Compare channels")
    viewer.reset_view()
    return viewer


def add_pipeline_result(
    viewer: Any, acq: Any, *, model: Any = "compact", score_threshold: float = 0.5
) -> Any:
    """Run :func:`~napari_hrs.pipeline.run_pipeline_on_sample` on ``acq`` and add a Labels layer
    ``hRS detections`` (features = the per-cell table, colours = marker category) plus a text
    summary in the viewer's status. Returns the pipeline result."""
    from napari_hrs._widgets import _display
    from napari_hrs._widgets._display import result_layer_data
    from napari_hrs.pipeline import run_pipeline_on_sample

    result = run_pipeline_on_sample(acq.path, model=model, score_threshold=score_threshold)
    data, kwargs = result_layer_data(result.detection)
    cells = result.cells
    if "label_id" in cells.columns:
        kwargs["features"] = _display.merge_features(kwargs["features"], cells, "label_id")
    kwargs.update(name="hRS detections", opacity=0.6, blending="translucent")
    if acq.pixel_size_um:
        kwargs["scale"] = (acq.pixel_size_um, acq.pixel_size_um)
    layer = viewer.add_labels(data, **kwargs)
    layer.contour = 2
    _display.refresh_colors(layer)
    print(result.summary_text())
    viewer.status = result.summary_text().splitlines()[0]
    return result


def save_screenshot(viewer: Any, path: str | Path) -> Path:
    """Render the canvas and save it as PNG (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    return path
