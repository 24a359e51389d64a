"""Dock widget: PRM1 / PNA per cell (napari_hrs.markers), positivity, categories, summary.

"Quantify" measures every cell of the cells layer in the PRM1 and PNA layers (a thread worker
with progress and Cancel). Changing the positivity method or a threshold re-calls the cells at
once, without measuring again; moving the Detect widget's score slider updates the summary
live (it counts the cells shown). The results go into the cells layer: its features table gains
the marker columns (``PRM1_mean_bgsub``, ``PRM1_positive``, ``category``...), each cell takes its
category colour (PRM1+PNA+ yellow, PRM1+ red, PNA+ green, neither grey), and the summary gives
the counts and the paper's statistic (PRM1+ and/or PNA+ among the detected hRS shown).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox

from napari_hrs._widgets import _display
from napari_hrs._widgets._common import (
    Job,
    Steps,
    check_same_shape,
    find_layer,
    follow_layers,
    layer_choices,
    level0,
    notify_error,
    pixel_size_um,
    steps,
    unwrap,
)

if TYPE_CHECKING:
    import napari

METHODS = ("otsu", "background_sd", "manual")
#: napari_hrs.markers.OTSU_SCALES, repeated so that loading the widget does not import the
#: markers package (numba) before it is used; a test checks that the two agree
OTSU_SCALES = ("log", "linear")
MARKERS_KEY = "hrs_markers"


def quantify_job(channels: dict[str, Any], labels: Any, cancel: threading.Event,
                 **params: Any) -> Steps:  # fmt: skip
    """Per-cell quantification as a job generator (yields tiles done, returns the table)."""
    from napari_hrs.markers import quantify

    return (yield from steps(quantify, channels, labels, cancel=cancel, **params))


class MarkersWidget(Container):
    """Quantify PRM1 / PNA per cell, call positivity, colour cells by category, summarize."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari.layers import Image, Labels

        super().__init__(labels=True)
        self.viewer = viewer = unwrap(viewer)
        img = layer_choices(viewer, Image)
        self.prm1 = ComboBox(label="PRM1", choices=img, nullable=True)
        self.pna = ComboBox(label="PNA", choices=img, nullable=True)
        self.cells = ComboBox(label="cells", choices=layer_choices(viewer, Labels), nullable=True)
        self.ring_gap = SpinBox(label="ring gap (px)", value=2, min=0, max=50)
        self.ring_width = SpinBox(label="ring width (px)", value=6, min=1, max=100)
        self.quantify_button = PushButton(text="Quantify")
        self.method = ComboBox(label="positivity", choices=METHODS, value="otsu")
        self.otsu_scale = ComboBox(label="Otsu scale", choices=OTSU_SCALES, value="log",
                                   tooltip="log: the default; linear when positives are rare "
                                   "(under ~3 % of the cells)")  # fmt: skip
        self.k = FloatSpinBox(label="k (ring SDs)", value=3.0, min=0.0, max=100.0, step=0.5,
                              visible=False)  # fmt: skip
        self.thr_prm1 = FloatSpinBox(label="PRM1 threshold", value=0.0, min=-1e12, max=1e12,
                                     step=10.0, visible=False)  # fmt: skip
        self.thr_pna = FloatSpinBox(label="PNA threshold", value=0.0, min=-1e12, max=1e12,
                                    step=10.0, visible=False)  # fmt: skip
        self.summary = Label(value="")
        self.scatter_button = PushButton(text="Scatter plot")
        self.extend([self.prm1, self.pna, self.cells, self.ring_gap, self.ring_width,
                     self.quantify_button])  # fmt: skip
        self.job = Job(self)
        self.extend([self.method, self.otsu_scale, self.k, self.thr_prm1, self.thr_pna, self.summary,
                     self.scatter_button])  # fmt: skip
        self.summary.native.setStyleSheet("font-family: monospace")
        self.table: Any = None  # the last quantification (one row per label id)
        self.layer: Any = None  # the cells layer it belongs to
        self.scatter: Any = None
        self.quantify_button.changed.connect(self.run)
        self.method.changed.connect(self._method_changed)
        for w in (self.otsu_scale, self.k, self.thr_prm1, self.thr_pna):
            w.changed.connect(lambda _v: self.call())
        self.scatter_button.changed.connect(self.show_scatter)
        follow_layers(viewer, self)
        self.reset_choices()
        self.prm1.value = find_layer(viewer, Image, "PRM1")
        self.pna.value = find_layer(viewer, Image, "PNA")
        self.cells.value = find_layer(viewer, Labels)

    def _method_changed(self, method: str) -> None:
        self.otsu_scale.visible = method == "otsu"
        self.k.visible = method == "background_sd"
        self.thr_prm1.visible = self.thr_pna.visible = method == "manual"
        self.call()

    # --- quantify -------------------------------------------------------------------------
    def parameters(self) -> tuple[dict[str, Any], Any, dict[str, Any]]:
        """(channels, labels, keyword arguments of ``quantify``); ValueError for the user."""
        chosen = {"PRM1": self.prm1.value, "PNA": self.pna.value}
        missing = [m for m, lay in chosen.items() if lay is None]
        if missing or self.cells.value is None:
            what = missing + (["cells (a Labels layer)"] if self.cells.value is None else [])
            raise ValueError(f"choose the {' and '.join(what)} layer(s) first")
        check_same_shape([*chosen.values(), self.cells.value])
        channels = {m: level0(lay) for m, lay in chosen.items()}
        params = {"ring_px": (int(self.ring_gap.value), int(self.ring_width.value)),
                  "pixel_size_um": pixel_size_um(self.cells.value)
                  or pixel_size_um(self.prm1.value)}  # fmt: skip
        return channels, level0(self.cells.value), params

    def run(self, *_: Any) -> Any:
        """Start the quantification in a thread worker (None on a user error)."""
        try:
            channels, labels, params = self.parameters()
        except Exception as exc:
            notify_error(exc)
            return None
        layer = self.cells.value
        return self.job.start(lambda ev: quantify_job(channels, labels, ev, **params),
                              lambda table: self.set_table(table, layer), "quantify")  # fmt: skip

    def set_table(self, table: Any, layer: Any) -> None:
        """Keep a quantified table for ``layer`` and call its cells."""
        if self.layer is not None and self.layer is not layer:
            self.layer.events.colormap.disconnect(self._shown_changed)
        if self.layer is not layer:
            # the Detect widget's score slider recolours the layer: follow it live
            layer.events.colormap.connect(self._shown_changed)
        self.table, self.layer = table, layer
        self.call()

    def _shown_changed(self, *_: Any) -> None:
        """The cells shown changed (score threshold): summarize the shown cells again."""
        from napari_hrs.markers import format_summary, summarize

        layer = self.layer
        state = layer.metadata.get(MARKERS_KEY) if layer is not None else None
        if state is None or "category" not in layer.features.columns:
            return
        summary = summarize(_display.shown_table(layer))
        if summary == state.get("summary"):
            return
        state["summary"] = summary
        self.summary.value = format_summary(summary)
        if self.scatter is not None:
            self.scatter.set_layer(layer)

    # --- call -----------------------------------------------------------------------------
    def call(self) -> dict[str, Any] | None:
        """Call positivity with the current method, update the cells layer and the summary;
        returns the summary (None before a quantification)."""
        from napari_hrs.markers import call_markers, format_summary, summarize

        layer = self.layer
        if self.table is None or layer is None or layer not in self.viewer.layers:
            return None
        method = self.method.value
        try:
            called = call_markers(self.table, method, k=float(self.k.value),
                                  thresholds={"PRM1": self.thr_prm1.value,
                                              "PNA": self.thr_pna.value},
                                  otsu_scale=self.otsu_scale.value)  # fmt: skip
        except Exception as exc:
            notify_error(exc)
            return None
        feats = _display.merge_features(layer.features, called, key="label_id")
        for col in ("PRM1_positive", "PNA_positive"):
            feats[col] = feats[col].fillna(False).astype(bool)
        feats["category"] = feats["category"].fillna("neither").astype(str)
        layer.features = feats
        summary = summarize(_display.shown_table(layer))
        layer.metadata[MARKERS_KEY] = {"method": method, "thresholds": called.attrs["thresholds"],
                                       "ring_px": [self.ring_gap.value, self.ring_width.value],
                                       "summary": summary}  # fmt: skip
        with layer.events.colormap.blocker(self._shown_changed):  # summarized just above
            _display.refresh_colors(layer)
        self.summary.value = format_summary(summary)
        if self.scatter is not None:
            self.scatter.set_layer(layer)
        return summary

    def show_scatter(self, *_: Any) -> Any:
        """Open (or refresh) the PRM1 vs PNA scatter plot dock for the cells layer."""
        from napari_hrs._widgets._scatter import ScatterWidget

        if self.layer is None:
            notify_error("quantify the cells first (press Quantify)")
            return None
        if self.scatter is None:
            self.scatter = ScatterWidget(self.viewer)
            window = getattr(self.viewer, "window", None)
            if window is not None:
                window.add_dock_widget(self.scatter, name="PRM1 vs PNA", area="right")
        self.scatter.set_layer(self.layer)
        return self.scatter
