"""Dock widget: brightfield, PRM1 and PNA side by side, and a gallery of the selected cell.

"Side by side" switches napari to grid mode with one viewbox per channel (one camera, so the
views stay linked), each holding its channel and an outline copy of the cells (a contour Labels
layer sharing the cells' data, never a copy of the pixels). "Overlay" restores the layers,
their order, visibility and the grid settings in one click. The gallery shows crops of every
channel around the selected cell (``selected_label`` of the cells layer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton, SpinBox

from napari_hrs._widgets import _display
from napari_hrs._widgets._common import (
    check_same_shape,
    find_layer,
    follow_layers,
    layer_choices,
    level0,
    notify_error,
    unwrap,
)
from napari_hrs._widgets._gallery import Gallery

if TYPE_CHECKING:
    import napari

OUTLINE_KEY = "hrs_outline_of"


def _reorder(layers: Any, wanted: list[Any]) -> None:
    """Move the layers into the order ``wanted`` (bottom to top; every layer listed once)."""
    for target, layer in enumerate(wanted):
        current = layers.index(layer)
        if current != target:  # current > target: the positions below are already final
            layers.move(current, target)


class CompareWidget(Container):
    """Brightfield / PRM1 / PNA in a linked grid with cell outlines, and a per-cell gallery."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari.layers import Image, Labels

        super().__init__(labels=True)
        self.viewer = viewer = unwrap(viewer)
        img = layer_choices(viewer, Image)
        self.channels = {
            role: ComboBox(label=role, choices=img, nullable=True)
            for role in ("brightfield", "PRM1", "PNA")
        }
        self.cells = ComboBox(label="cells", choices=layer_choices(viewer, Labels), nullable=True)
        self.grid_button = PushButton(text="Side by side")
        self.overlay_button = PushButton(text="Overlay", enabled=False)
        self.crop = SpinBox(label="gallery crop (px)", value=64, min=16, max=1024, step=8)
        self.extend([*self.channels.values(), self.cells, self.grid_button,
                     self.overlay_button, self.crop])  # fmt: skip
        self.gallery = Gallery()
        self.native.layout().addWidget(self.gallery)
        self._saved: dict[str, Any] | None = None
        self._watched: Any = None
        self.grid_button.changed.connect(self.side_by_side)
        self.overlay_button.changed.connect(self.overlay)
        self.cells.changed.connect(self._watch)
        self.crop.changed.connect(lambda _v: self.update_gallery())
        follow_layers(viewer, self)
        self.reset_choices()
        for role, box in self.channels.items():
            box.value = find_layer(viewer, Image, role)
        self.cells.value = find_layer(viewer, Labels)

    def _chosen(self) -> list[Any]:
        chosen = [box.value for box in self.channels.values() if box.value is not None]
        if not chosen:
            raise ValueError("choose at least one channel layer (brightfield, PRM1, PNA)")
        return chosen

    # --- grid -----------------------------------------------------------------------------
    def side_by_side(self, *_: Any) -> list[Any]:
        """One grid viewbox per chosen channel with the cells outlined; returns the outline
        layers. Errors (no channel, different shapes) become notifications."""
        try:
            channels = self._chosen()
            cells = self.cells.value
            check_same_shape(channels + ([cells] if cells is not None else []))
        except ValueError as exc:
            notify_error(exc)
            return []
        if self._saved is not None:
            self.overlay()
        viewer = self.viewer
        grid = viewer.canvas.grid
        self._saved = {
            "order": list(viewer.layers),
            "visible": {id(lay): lay.visible for lay in viewer.layers},
            "grid": (grid.enabled, grid.stride, grid.shape),
        }
        outlines = []
        for lay in viewer.layers:
            lay.visible = lay in channels
        for ch in channels:
            if cells is not None:
                outlines.append(self._outline(cells, ch))
        if outlines:  # channel, its outline, next channel, its outline...
            wanted = [lay for pair in zip(channels, outlines, strict=True) for lay in pair]
        else:
            wanted = list(channels)
        rest = [lay for lay in viewer.layers if lay not in wanted]
        _reorder(viewer.layers, wanted + rest)
        grid.stride = 2 if outlines else 1
        grid.shape = (1, len(channels))
        grid.enabled = True
        self._saved["outlines"] = outlines
        self.overlay_button.enabled = True
        viewer.reset_view()
        return outlines

    def _outline(self, cells: Any, channel: Any) -> Any:
        layer = self.viewer.add_labels(
            cells.data, name=f"{cells.name} outline ({channel.name})", scale=cells.scale,
            translate=cells.translate, multiscale=cells.multiscale, opacity=1.0,
            metadata={OUTLINE_KEY: cells.name}, features=cells.features,
        )  # fmt: skip
        layer.contour = 1
        layer.colormap = cells.colormap
        layer.events.selected_label.connect(
            lambda ev: setattr(cells, "selected_label", int(layer.selected_label))
        )
        return layer

    def overlay(self, *_: Any) -> None:
        """Back to one overlaid view: outlines removed, layer order and visibility restored."""
        saved, self._saved = self._saved, None
        if saved is None:
            return
        viewer = self.viewer
        for lay in saved.get("outlines", []):
            if lay in viewer.layers:
                viewer.layers.remove(lay)
        order = [lay for lay in saved["order"] if lay in viewer.layers]
        order += [lay for lay in viewer.layers if lay not in order]
        _reorder(viewer.layers, order)
        for lay in viewer.layers:
            lay.visible = saved["visible"].get(id(lay), lay.visible)
        grid = viewer.canvas.grid
        grid.enabled, grid.stride, grid.shape = saved["grid"]
        self.overlay_button.enabled = False

    # --- gallery --------------------------------------------------------------------------
    def _watch(self, layer: Any) -> None:
        if self._watched is not None:
            self._watched.events.selected_label.disconnect(self.update_gallery)
        self._watched = layer
        if layer is not None:
            layer.events.selected_label.connect(self.update_gallery)

    def crops(self, label: int) -> dict[str, np.ndarray]:
        """Channel name -> ``(crop, crop)`` pixels centred on cell ``label`` (full resolution);
        empty when the cell has no box in the features table."""
        cells = self.cells.value
        if cells is None:
            return {}
        box = _display.cell_box(cells, label)
        if box is None:
            return {}
        cy, cx = (box[1] + box[3]) / 2, (box[0] + box[2]) / 2
        half = max(int(self.crop.value), box[2] - box[0], box[3] - box[1]) // 2
        out = {}
        for role, combo in self.channels.items():
            lay = combo.value
            if lay is None:
                continue
            data = level0(lay)
            h, w = data.shape[-2:]
            y0, x0 = max(0, int(cy) - half), max(0, int(cx) - half)
            crop = data[..., y0 : min(h, int(cy) + half), x0 : min(w, int(cx) + half)]
            out[f"{role}: {lay.name}"] = np.asarray(crop)
        return out

    def update_gallery(self, *_: Any) -> None:
        """Show the crops of the cells layer's selected cell."""
        cells = self.cells.value
        if cells is None:
            self.gallery.set_crops({}, "")
            return
        label = int(cells.selected_label)
        crops = self.crops(label)
        limits = {f"{r}: {c.value.name}": tuple(c.value.contrast_limits)
                  for r, c in self.channels.items() if c.value is not None}  # fmt: skip
        title = f"cell {label}" if crops else f"cell {label}: no box in the cells' table"
        self.gallery.set_crops(crops, title, limits)
