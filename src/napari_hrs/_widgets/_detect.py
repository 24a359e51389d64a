"""Dock widget: detect round spermatids in a brightfield layer (napari_hrs.engine.detect).

The detection runs in a napari thread worker, tile by tile, with a progress bar and a Cancel
button. The result is a lazy, multiscale Labels layer read from the NGFF result store (never a
whole-slide array in memory) with a features table (id, class, score, box, centroid, area); the
"show score ≥" slider hides and shows instances without re-running the model.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
)

from napari_hrs._widgets import _display
from napari_hrs._widgets._common import (
    Job,
    Steps,
    avoid_triton_crash,
    find_layer,
    follow_layers,
    layer_acquisition,
    layer_choices,
    notify,
    notify_error,
    steps,
    unwrap,
)

if TYPE_CHECKING:
    import napari

MODELS = ("compact (bundled)", "checkpoint file")
DEVICES = ("auto", "cpu", "cuda")
STORES = ("temporary folder", "inside the image (OME-Zarr)", "new zarr")


def resolve_model(choice: str, checkpoint: Path | None) -> Any:
    """The model spec :func:`napari_hrs.engine.detect` accepts: ``"compact"`` or a checkpoint
    path (ours, or a detectron2 ``.pth`` / ``.pkl``)."""
    if choice == MODELS[0]:
        return "compact"
    if checkpoint is None or not Path(checkpoint).is_file():
        raise FileNotFoundError(f"model checkpoint {checkpoint or '(none chosen)'}: no such file; "
                                "choose a .pt / .pth checkpoint or the bundled compact model")  # fmt: skip
    return Path(checkpoint)


def detect_job(acq: Any, model: Any, cancel: threading.Event, **params: Any) -> Steps:
    """The detection as a job generator: yields ``(tiles_done, tiles_total)``, returns the
    :class:`~napari_hrs.engine.results.DetectionResult` (lazy labels + table + metadata)."""
    from napari_hrs.engine.detect import detect

    return (yield from steps(detect, acq, model, cancel=cancel, **params))


class DetectWidget(Container):
    """Detect round spermatids: brightfield layer, model, device, tile, score threshold."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari.layers import Image

        super().__init__(labels=True)
        avoid_triton_crash()  # before torchvision is first imported (by the detection)
        self.viewer = viewer = unwrap(viewer)
        self.image = ComboBox(label="brightfield", choices=layer_choices(viewer, Image),
                              nullable=True)  # fmt: skip
        self.model = ComboBox(label="model", choices=MODELS, value=MODELS[0])
        self.checkpoint = FileEdit(label="checkpoint", mode="r", visible=False,
                                   filter="*.pt *.pth *.pkl *.ckpt")  # fmt: skip
        self.device = ComboBox(label="device", choices=DEVICES, value="auto")
        self.tile = SpinBox(label="tile (px)", value=1024, min=128, max=8192, step=128)
        self.score = FloatSpinBox(label="score threshold", value=0.5, min=0.0, max=1.0,
                                  step=0.05)  # fmt: skip
        self.store = ComboBox(label="result", choices=STORES, value=STORES[0])
        self.out = FileEdit(label="result zarr", mode="w", visible=False, filter="*.zarr")
        self.run_button = PushButton(text="Detect")
        self.shown = FloatSlider(label="show score ≥", value=0.5, min=0.0, max=1.0, step=0.01,
                                 enabled=False, tracking=True)  # fmt: skip
        self.summary = Label(value="")
        self.extend([self.image, self.model, self.checkpoint, self.device, self.tile, self.score,
                     self.store, self.out, self.run_button])  # fmt: skip
        self.job = Job(self)
        self.extend([self.shown, self.summary])
        self.result_layer: Any = None
        self.model.changed.connect(lambda v: setattr(self.checkpoint, "visible", v == MODELS[1]))
        self.store.changed.connect(lambda v: setattr(self.out, "visible", v == STORES[2]))
        self.run_button.changed.connect(self.run)
        self.shown.changed.connect(self.set_threshold)
        follow_layers(viewer, self)
        self.reset_choices()
        self.image.value = find_layer(viewer, Image, "brightfield") or self.image.value

    # --- parameters -----------------------------------------------------------------------
    def parameters(self) -> tuple[Any, Any, dict[str, Any]]:
        """(acquisition, model spec, keyword arguments of ``detect``) from the widget values;
        raises a ValueError / FileNotFoundError with a message for the user."""
        layer = self.image.value
        if layer is None:
            raise ValueError("no brightfield layer chosen: open an image (File > Open) and pick "
                             "its brightfield channel in 'brightfield'")  # fmt: skip
        acq = layer_acquisition(layer)
        model = resolve_model(self.model.value, self.checkpoint.value)
        params: dict[str, Any] = {
            "tile": int(self.tile.value),
            "score_threshold": float(self.score.value),
            "device": None if self.device.value == "auto" else self.device.value,
        }
        if self.store.value == STORES[0]:
            params["out"] = Path(tempfile.mkdtemp(prefix="napari-hrs-")) / "detections.zarr"
        elif self.store.value == STORES[2]:
            if not self.out.value or str(self.out.value) in ("", "."):
                raise ValueError("choose where to write the result ('result zarr')")
            params["out"], params["overwrite"] = Path(self.out.value), True
        else:
            params["overwrite"] = True  # replaces labels/detections inside the image
        return acq, model, params

    # --- run ------------------------------------------------------------------------------
    def run(self, *_: Any) -> Any:
        """Start the detection in a thread worker; returns the worker (None on a user error)."""
        try:
            acq, model, params = self.parameters()
        except Exception as exc:
            notify_error(exc)
            return None
        layer = self.image.value
        return self.job.start(lambda ev: detect_job(acq, model, ev, **params),
                              lambda result: self.show_result(result, layer), "detect")  # fmt: skip

    def show_result(self, result: Any, image_layer: Any) -> Any:
        """Add the result as a Labels layer aligned with ``image_layer``; returns the layer."""
        data, kwargs = _display.result_layer_data(result)
        name = "detections" if result.complete else "detections (incomplete)"
        meta = {key: image_layer.metadata.get(key)
                for key in ("acquisition_path", "pixel_size_um", "scene", "plane")}  # fmt: skip
        meta.update(role="detections", hrs_result=str(result.path),
                    hrs_detection=dict(result.metadata))  # fmt: skip
        layer = self.viewer.add_labels(data, name=name, scale=image_layer.scale[-2:],
                                       translate=image_layer.translate[-2:], metadata=meta,
                                       opacity=0.6, **kwargs)  # fmt: skip
        self.result_layer = layer
        run = result.metadata.get("parameters") or {}
        thr = float(run.get("score_threshold", self.score.value))
        self.shown.enabled = True
        with self.shown.changed.blocked():  # below the run's threshold there is nothing to show
            self.shown.min, self.shown.value = thr, thr
        self.set_threshold(thr)
        at_cap = (result.metadata.get("stats") or {}).get("tiles_at_detection_cap", 0)
        if at_cap:
            notify(f"{at_cap} tiles returned as many cells as the model's cap: some may be "
                   "missing; detect again with a smaller tile", warning=True)  # fmt: skip
        if not result.complete:
            md = result.metadata
            notify(f"detection cancelled after {md.get('tiles_done')} of "
                   f"{md.get('tiles_total')} tiles; the partial result is shown", warning=True)  # fmt: skip
        return layer

    def set_threshold(self, value: float) -> None:
        """Show only the instances of the last result scoring at least ``value``."""
        layer = self.result_layer
        if layer is None or layer not in self.viewer.layers:
            return
        n = _display.set_score_threshold(layer, float(value))
        self.summary.value = f"{n} of {len(layer.features)} cells shown (score ≥ {value:.2f})"
