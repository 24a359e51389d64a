"""Dock widget: save the cells of a Labels layer (napari_hrs.io.export).

Labels as an NGFF label image inside the image's OME-Zarr (``labels/<name>``), as a new zarr,
or as a TIFF; the per-cell table as CSV; the detections as COCO JSON (RLE masks); the picking
list (hRS centroids in µm, best score first, with the marker calls). Every file is written
atomically with provenance (plugin version, model, thresholds). With "only cells shown", cells
hidden by the Detect widget's score slider are left out of every export.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, LineEdit, PushButton

from napari_hrs._widgets import _display
from napari_hrs._widgets._common import (
    Job,
    Steps,
    find_layer,
    follow_layers,
    layer_choices,
    level0,
    notify,
    notify_error,
    pixel_size_um,
    steps,
    unwrap,
)

if TYPE_CHECKING:
    import napari

LABELS_ZARR, LABELS_NGFF, LABELS_TIFF = (
    "labels: new zarr",
    "labels: inside the image",
    "labels: TIFF",
)
TABLE, COCO, PICKING = "cell table (CSV)", "detections (COCO JSON)", "picking list (CSV)"
KINDS = (LABELS_ZARR, LABELS_NGFF, LABELS_TIFF, TABLE, COCO, PICKING)
SUFFIXES = {LABELS_ZARR: (".zarr",), LABELS_TIFF: (".tif", ".tiff"), TABLE: (".csv",),
            COCO: (".json",), PICKING: (".csv",)}  # fmt: skip


@dataclass
class ExportRequest:
    """Everything an export needs, gathered in the GUI thread (the worker reads no layer)."""

    kind: str
    path: Path
    labels: Any  # (Y, X) integer array, lazy
    table: Any  # features of the cells exported (index = label id)
    pixel_size_um: float | None
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str = "detections"
    image_name: str = "image"


def output_path(kind: str, path: Any) -> Path:
    """The chosen path, with the kind's suffix appended when it has none; ValueError if empty
    or of another type."""
    if kind == LABELS_NGFF:
        return Path()
    if path is None or str(path) in ("", "."):
        raise ValueError(f"choose where to save the {kind} ('save to')")
    path = Path(path)
    allowed = SUFFIXES[kind]
    if not path.suffix:
        return path.with_suffix(allowed[0])
    if path.suffix.lower() not in allowed:
        raise ValueError(f"{path.name}: a {kind} is saved as {' or '.join(allowed)}; change the "
                         "file name or the export type")  # fmt: skip
    return path


def image_group(acquisition_path: str | None, layer_name: str) -> Path:
    """The OME-Zarr image group a layer came from (where ``labels/`` goes)."""
    import warnings

    from napari_hrs.io import open_acquisition

    if not acquisition_path or not Path(acquisition_path).is_dir():
        raise ValueError(f"the cells layer {layer_name!r} does not come from an OME-Zarr image; "
                         "export the labels to a new zarr or a TIFF instead")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acq = open_acquisition(acquisition_path, strict=False)
    if not acq.format.startswith("ome-zarr"):
        raise ValueError(f"{acquisition_path} is a {acq.format or 'non-OME'} file, not an "
                         "OME-Zarr; export the labels to a new zarr or a TIFF instead")  # fmt: skip
    return Path(acquisition_path) / (acq.metadata.get("zarr_group") or "")


def run_export(req: ExportRequest, progress: Any = None, cancel: Any = None) -> Path:
    """Write one export (called in the worker thread); returns the path written."""
    from napari_hrs.io import export

    table = req.table.drop(columns=["index"]).copy()
    if "id" not in table.columns and "label_id" not in table.columns:
        table.insert(0, "id", req.table["index"].to_numpy())
    kw = {"metadata": req.metadata, "progress": progress, "cancel": cancel}
    px = req.pixel_size_um
    if req.kind == LABELS_ZARR:
        return export.save_labels_zarr(req.labels, req.path, pixel_size_um=px, overwrite=True, **kw)
    if req.kind == LABELS_TIFF:
        return export.save_labels_tiff(req.labels, req.path, pixel_size_um=px, overwrite=True, **kw)
    if req.kind == LABELS_NGFF:
        return export.save_labels_ngff(req.labels, req.path, req.name, pixel_size_um=px,
                                       overwrite=True, **kw)  # fmt: skip
    if req.kind == COCO:
        return export.save_coco(req.labels, req.path, table, image_name=req.image_name,
                                overwrite=True, **kw)  # fmt: skip
    if req.kind == TABLE:
        return export.save_table(table, req.path, metadata=req.metadata, overwrite=True)
    if req.kind == PICKING:
        return export.save_picking_list(table, req.path, metadata=req.metadata, overwrite=True,
                                        pixel_size_um=px)  # fmt: skip
    raise ValueError(f"unknown export {req.kind!r}; choose one of {list(KINDS)}")


def export_job(req: ExportRequest, cancel: threading.Event) -> Steps:
    """One export as a job generator (yields progress, returns the path)."""
    return (yield from steps(run_export, req, cancel=cancel))


class ExportWidget(Container):
    """Save labels (NGFF / zarr / TIFF), the cell table, COCO JSON or the picking list."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari.layers import Labels

        super().__init__(labels=True)
        self.viewer = viewer = unwrap(viewer)
        self.cells = ComboBox(label="cells", choices=layer_choices(viewer, Labels), nullable=True)
        self.kind = ComboBox(label="export", choices=KINDS, value=LABELS_ZARR)
        self.path = FileEdit(label="save to", mode="w")
        self.name = LineEdit(label="label name", value="detections", visible=False)
        self.shown_only = CheckBox(text="only cells shown (score ≥ slider)", value=True)
        self.export_button = PushButton(text="Export")
        self.extend([self.cells, self.kind, self.path, self.name, self.shown_only,
                     self.export_button])  # fmt: skip
        self.job = Job(self)
        self.last_path: Path | None = None
        self.kind.changed.connect(self._kind_changed)
        self.export_button.changed.connect(self.run)
        follow_layers(viewer, self)
        self.reset_choices()
        self.cells.value = find_layer(viewer, Labels)

    def _kind_changed(self, kind: str) -> None:
        self.name.visible = kind == LABELS_NGFF
        self.path.visible = kind != LABELS_NGFF

    def request(self) -> ExportRequest:
        """The export asked for by the widget values; ValueError / OSError for the user."""
        from napari_hrs.io.export import drop_labels, provenance

        layer = self.cells.value
        if layer is None:
            raise ValueError("no cells layer chosen: run Detect, or open / draw a Labels layer")
        kind = self.kind.value
        meta = layer.metadata
        path = output_path(kind, self.path.value)
        if kind == LABELS_NGFF:
            path = image_group(meta.get("acquisition_path"), layer.name)
        feats = layer.features
        if feats is None or "index" not in feats.columns:
            if kind in (TABLE, PICKING):
                raise ValueError(f"the cells layer {layer.name!r} has no table; run Detect or "
                                 "Markers first, or export the labels")  # fmt: skip
            import pandas as pd

            feats = pd.DataFrame({"index": []})
        labels = level0(layer)
        threshold = meta.get(_display.THRESHOLD_KEY)
        if self.shown_only.value and threshold is not None:
            labels = drop_labels(labels, _display.hidden_ids(feats, threshold))
            feats = _display.shown_table(layer)
        markers = meta.get("hrs_markers") or {}
        prov = provenance(source=meta.get("acquisition_path"), layer=layer.name,
                          detection=meta.get("hrs_detection"),
                          markers={k: v for k, v in markers.items() if k != "summary"} or None,
                          score_threshold_shown=threshold if self.shown_only.value else None)  # fmt: skip
        src = meta.get("acquisition_path")
        return ExportRequest(kind=kind, path=path, labels=labels, table=feats,
                             pixel_size_um=pixel_size_um(layer), metadata=prov,
                             name=str(self.name.value).strip() or "detections",
                             image_name=Path(src).name if src else str(layer.name))  # fmt: skip

    def run(self, *_: Any) -> Any:
        """Start the export in a thread worker (None on a user error)."""
        try:
            req = self.request()
        except Exception as exc:
            notify_error(exc)
            return None
        return self.job.start(lambda ev: export_job(req, ev), self._saved, "export")

    def _saved(self, path: Path) -> None:
        self.last_path = Path(path)
        notify(f"saved {path}")
