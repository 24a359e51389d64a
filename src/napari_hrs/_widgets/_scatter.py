"""Dock widget: PRM1 vs PNA per cell (matplotlib, Qt backend), linked both ways with the viewer.

Each point is a cell of a Labels layer whose features hold marker columns (after the Markers
widget): x = PRM1, y = PNA background-subtracted mean intensity (raw units), coloured by
category, with the positivity thresholds as lines. Clicking a point selects the cell
(``selected_label``) and centres the camera on it; selecting a cell in the viewer rings its point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container

from napari_hrs._widgets import _display
from napari_hrs._widgets._common import layers_of, unwrap

if TYPE_CHECKING:
    import napari

X_COLUMN, Y_COLUMN = "PRM1_mean_bgsub", "PNA_mean_bgsub"


def _marker_layers(viewer: Any) -> list[Any]:
    from napari.layers import Labels

    return [lay for lay in layers_of(viewer, Labels)
            if lay.features is not None and X_COLUMN in lay.features.columns]  # fmt: skip


class ScatterWidget(Container):
    """PRM1 vs PNA scatter plot of a cells layer; ``ids[i]`` is the label id of point ``i``."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        super().__init__(labels=True)
        self.viewer = viewer = unwrap(viewer)
        self.cells = ComboBox(label="cells", choices=lambda _w=None: _marker_layers(viewer),
                              nullable=True)  # fmt: skip
        self.append(self.cells)
        self.figure = Figure(figsize=(4, 4), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(280)
        self.native.layout().addWidget(self.canvas)
        self.ax = self.figure.add_subplot()
        self.ids = np.zeros(0, np.int64)
        self.xy = np.zeros((0, 2))
        self.points: Any = None
        self.ring: Any = None
        self.layer: Any = None
        self.canvas.mpl_connect("pick_event", self._on_pick)
        self.cells.changed.connect(self.set_layer)
        for ev in ("inserted", "removed"):
            getattr(viewer.layers.events, ev).connect(lambda _e: self.cells.reset_choices())

    def set_layer(self, layer: Any) -> None:
        """Plot ``layer``'s cells and follow its features and selected cell."""
        if self.layer is not None and self.layer is not layer:
            self.layer.events.features.disconnect(self.plot)
            self.layer.events.colormap.disconnect(self.plot)  # the score threshold changed
            self.layer.events.selected_label.disconnect(self.show_selected)
        if layer is not None and layer is not self.layer:
            layer.events.features.connect(self.plot)
            layer.events.colormap.connect(self.plot)
            layer.events.selected_label.connect(self.show_selected)
        self.layer = layer
        self.cells.reset_choices()
        if layer is not None and layer in self.cells.choices and self.cells.value is not layer:
            with self.cells.changed.blocked():
                self.cells.value = layer
        self.plot()

    def plot(self, *_: Any) -> None:
        """Redraw the points (cells shown in the viewer), thresholds and the selection ring."""
        from napari_hrs.markers import CATEGORY_COLORS

        ax = self.ax
        ax.clear()
        self.points = self.ring = None
        layer = self.layer
        feats = _display.shown_table(layer) if layer is not None else None
        if feats is None or X_COLUMN not in feats.columns or Y_COLUMN not in feats.columns:
            ax.set_title("no marker measurements: run Markers > Quantify")
            self.ids, self.xy = np.zeros(0, np.int64), np.zeros((0, 2))
            self.canvas.draw_idle()
            return
        self.ids = feats["index"].to_numpy(np.int64)
        self.xy = np.c_[feats[X_COLUMN].to_numpy(float), feats[Y_COLUMN].to_numpy(float)]
        cats = feats["category"].astype(str) if "category" in feats else None
        colors = [CATEGORY_COLORS.get(c, "#1f77b4") for c in cats] if cats is not None else "#1f77b4"  # fmt: skip
        self.points = ax.scatter(self.xy[:, 0], self.xy[:, 1], c=colors, s=14, picker=True,
                                 pickradius=5, linewidths=0)  # fmt: skip
        info = (layer.metadata.get("hrs_markers") or {}).get("thresholds", {})
        for marker, line in (("PRM1", ax.axvline), ("PNA", ax.axhline)):
            t = info.get(marker, {})
            if t.get("method") != "background_sd" and np.isfinite(t.get("threshold", np.nan)):
                line(t["threshold"], color="0.4", linestyle="--", linewidth=0.8)
        if cats is not None:
            for cat, color in CATEGORY_COLORS.items():
                ax.scatter([], [], c=color, s=14, label=f"{cat} ({int((cats == cat).sum())})")
            ax.legend(fontsize="small", loc="best")
        ax.set_xlabel("PRM1 mean − background (raw units)")
        ax.set_ylabel("PNA mean − background (raw units)")
        ax.set_title(f"{layer.name}: {len(self.ids)} cells", fontsize="medium")
        self.show_selected()

    def _on_pick(self, event: Any) -> None:
        if event.artist is not self.points or not len(event.ind):
            return
        me = event.mouseevent
        ind = np.asarray(event.ind)
        if me is not None and me.x is not None:  # the nearest of the points under the cursor
            disp = self.ax.transData.transform(self.xy[ind])
            ind = ind[[int(np.argmin(np.hypot(*(disp - [me.x, me.y]).T)))]]
        self.select(int(self.ids[ind[0]]))

    def select(self, label: int) -> None:
        """Select cell ``label`` in the cells layer and centre the camera on it."""
        layer = self.layer
        if layer is None:
            return
        layer.selected_label = int(label)
        yx = _display.cell_centroid(layer, label)
        if yx is not None:
            world = np.asarray(layer.data_to_world(yx), float)
            self.viewer.camera.center = tuple(world[-2:])

    def show_selected(self, *_: Any) -> None:
        """Ring the point of the layer's selected cell (none when it has no point)."""
        if self.ring is not None:
            self.ring.remove()
            self.ring = None
        if self.layer is not None and len(self.ids):
            hit = np.flatnonzero(self.ids == int(self.layer.selected_label))
            if len(hit):
                x, y = self.xy[hit[0]]
                (self.ring,) = self.ax.plot([x], [y], "o", markersize=12, markerfacecolor="none",
                                            markeredgecolor="black", markeredgewidth=1.5)  # fmt: skip
        self.canvas.draw_idle()

    @property
    def selected_point(self) -> int | None:
        """Index of the ringed point, or None."""
        if self.ring is None:
            return None
        x, y = self.ring.get_xdata()[0], self.ring.get_ydata()[0]
        hit = np.flatnonzero((self.xy[:, 0] == x) & (self.xy[:, 1] == y))
        return int(hit[0]) if len(hit) else None
