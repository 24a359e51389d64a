"""Dock widget: fine-tune the model on cells annotated in napari, then show its evaluation.

Pick the brightfield image layer and the Labels layer of annotated cells (one id per cell; a
``class_name`` column in the layer's features gives per-cell classes, else every cell is the
class typed here). The widget only collects parameters: the work is
:func:`napari_hrs.train.finetune_on_labels` (crops, split, :func:`~napari_hrs.train.fit`,
:func:`~napari_hrs.train.evaluate`), run in a thread worker with a progress bar and Cancel. When
it ends, the held-out mAP / AP50 and the precision-recall curve are shown.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, PushButton, SpinBox

from napari_hrs._widgets._common import (
    Job,
    Steps,
    avoid_triton_crash,
    brightfield_plane,
    find_layer,
    follow_layers,
    layer_choices,
    level0,
    notify,
    notify_error,
    steps,
    unwrap,
)

if TYPE_CHECKING:
    import napari

STARTS = ("bundled compact model", "checkpoint file", "from scratch (compact)")


def layer_annotations(image_layer: Any, labels_layer: Any, default_class: str
                      ) -> tuple[np.ndarray, np.ndarray, dict[int, str], list[str]]:  # fmt: skip
    """(image, labels, {label_id: class}, class names) from two layers, full resolution.

    Classes come from a ``class_name`` (or ``class``) column of the Labels layer's features
    (matched by its ``index`` / ``label_id`` column); cells without one get ``default_class``.
    """
    image = np.asarray(brightfield_plane(image_layer, level0(image_layer)))
    labels = np.asarray(level0(labels_layer))
    if image.shape != labels.shape:
        raise ValueError(f"'{image_layer.name}' is {image.shape[-2:]} but '{labels_layer.name}' is "
                         f"{labels.shape}; pick a 2-D Labels layer drawn on this image")  # fmt: skip
    ids = np.unique(labels[labels > 0])
    if len(ids) == 0:
        raise ValueError(f"'{labels_layer.name}' has no labelled cell; paint cells (one label "
                         "value per cell) before training")  # fmt: skip
    classes = {int(i): default_class for i in ids}
    feats = getattr(labels_layer, "features", None)
    if feats is not None and len(feats):
        col = next((c for c in ("class_name", "class") if c in feats.columns), None)
        idc = next((c for c in ("index", "label_id", "id") if c in feats.columns), None)
        if col and idc:
            for i, c in zip(feats[idc], feats[col], strict=True):
                if int(i) in classes and isinstance(c, str) and c:
                    classes[int(i)] = c
    names = [default_class] + sorted(set(classes.values()) - {default_class})
    used = set(classes.values())
    return image, labels.astype(np.int64), classes, [n for n in names if n in used]


def train_job(image: np.ndarray, labels: np.ndarray, classes: dict[int, str],
              class_names: list[str], cancel: threading.Event, **params: Any) -> Steps:  # fmt: skip
    """The fine-tuning as a job generator: yields ``(done, total)``, returns the
    :class:`~napari_hrs.train.finetune.FinetuneResult`."""
    from napari_hrs.train.finetune import finetune_on_labels

    return (yield from steps(finetune_on_labels, [image], [labels], cancel=cancel,
                             classes=[classes], class_names=class_names, **params))  # fmt: skip


class TrainWidget(Container):
    """Fine-tune on the open image + Labels layers; show mAP and the PR curve at the end."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from napari.layers import Image, Labels

        super().__init__(labels=True)
        avoid_triton_crash()
        self.viewer = viewer = unwrap(viewer)
        self.image = ComboBox(label="brightfield", choices=layer_choices(viewer, Image),
                              nullable=True)  # fmt: skip
        self.labels = ComboBox(label="annotated cells", choices=layer_choices(viewer, Labels),
                               nullable=True)  # fmt: skip
        self.class_name = LineEdit(label="class", value="round_spermatid")
        self.start = ComboBox(label="start from", choices=STARTS, value=STARTS[0])
        self.checkpoint = FileEdit(label="checkpoint", mode="r", visible=False,
                                   filter="*.pt *.pth *.pkl")  # fmt: skip
        self.iters = SpinBox(label="iterations", value=300, min=1, max=100_000, step=50)
        self.crop = SpinBox(label="crop (px)", value=256, min=64, max=2048, step=64)
        self.device = ComboBox(label="device", choices=("auto", "cpu", "cuda"), value="auto")
        self.out = FileEdit(label="save model as", mode="w", filter="*.pt")
        self.run_button = PushButton(text="Train")
        self.extend([self.image, self.labels, self.class_name, self.start, self.checkpoint,
                     self.iters, self.crop, self.device, self.out, self.run_button])  # fmt: skip
        self.job = Job(self)
        self.result_text = Label(value="")
        self.append(self.result_text)
        self.curve = _ImageView()
        self.native.layout().addWidget(self.curve)
        self.result: Any = None
        self.start.changed.connect(lambda v: setattr(self.checkpoint, "visible", v == STARTS[1]))
        self.run_button.changed.connect(self.run)
        follow_layers(viewer, self)
        self.reset_choices()
        self.image.value = find_layer(viewer, Image, "brightfield") or self.image.value

    def parameters(self) -> tuple[tuple, dict[str, Any]]:
        """((image, labels, classes, class names), keyword arguments of the fine-tuning)."""
        if self.image.value is None or self.labels.value is None:
            raise ValueError("choose the brightfield image and the Labels layer of annotated "
                             "cells (paint one label value per cell)")  # fmt: skip
        name = str(self.class_name.value).strip()
        if not name:
            raise ValueError("type the class of the annotated cells (e.g. round_spermatid)")
        data = layer_annotations(self.image.value, self.labels.value, name)
        if self.start.value == STARTS[0]:
            init: Any = "compact"
        elif self.start.value == STARTS[1]:
            ck = self.checkpoint.value
            if not ck or not Path(ck).is_file():
                raise FileNotFoundError(f"checkpoint {ck or '(none chosen)'}: no such file")
            init = Path(ck)
        else:
            init = None
        out = self.out.value
        if not out or str(out) in ("", "."):
            out = Path(tempfile.mkdtemp(prefix="napari-hrs-train-")) / "model.pt"
        out = Path(out)
        if out.is_dir() or not out.parent.exists():
            raise ValueError(
                f"cannot save the model as {out}: choose a .pt file in an existing folder"
            )
        params = {"out": out, "init": init, "iters": int(self.iters.value),
                  "crop": int(self.crop.value),
                  "device": None if self.device.value == "auto" else self.device.value}  # fmt: skip
        return data, params

    def run(self, *_: Any) -> Any:
        """Start the fine-tuning in a thread worker (None on a user error)."""
        try:
            data, params = self.parameters()
        except Exception as exc:
            notify_error(exc)
            return None
        self.result_text.value = ""
        return self.job.start(lambda ev: train_job(*data, ev, **params), self.show_result, "train")

    def show_result(self, result: Any) -> None:
        """Show the held-out evaluation of the trained model."""
        self.result = result
        rep = result.report
        per = rep.per_class.get(rep.target_class, {})
        self.result_text.value = (
            f"saved {result.checkpoint.name} ({result.n_train} training crops, {result.n_val} "
            f"held out)\nheld-out {rep.target_class}: segm mAP {per.get('segm_AP', rep.segm['AP']):.3f}, "
            f"AP50 {per.get('segm_AP50', rep.segm['AP50']):.3f}; bbox mAP {rep.bbox['AP']:.3f}"
        )  # fmt: skip
        png = result.eval_dir / "pr_curve.png"
        if png.exists():
            self.curve.show(png)
        notify(f"model saved to {result.checkpoint}")


class _ImageView:
    """A QLabel showing a PNG (the PR curve), scaled to the dock's width."""

    def __new__(cls) -> Any:
        from qtpy.QtGui import QPixmap
        from qtpy.QtWidgets import QLabel

        class View(QLabel):
            def show(self, path: Path) -> None:  # type: ignore[override]
                pix = QPixmap(str(path))
                self.setPixmap(pix.scaledToWidth(360))
                self.setToolTip(str(path))
                self.path = path
                super().show()

        view = View()
        view.path = None
        view.hide()
        return view
