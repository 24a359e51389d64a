"""Shared builders for the widget tests: the ``viewer`` fixture, a brightfield scene the fake
model detects, marker channels with known positive cells, and a detection-like cells layer.

``viewer`` is napari's ``make_napari_viewer()`` when OpenGL works (a desktop, or Xvfb as in
scripts/test.sh). Without OpenGL (``QT_QPA_PLATFORM=offscreen``) napari cannot create image
layers on its canvas, so the widgets are tested on a headless ``ViewerModel`` (layers, grid,
camera; no window) with a QApplication: the widget code is the same, only nothing is drawn.

"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd

from _engine_fakes import FakeDiscModel, disc_image, random_discs
from _markers_helpers import marker_scene


@functools.cache
def opengl_available() -> bool:
    """Whether Qt can create an OpenGL context here (False on the offscreen platform)."""
    from qtpy.QtGui import QOpenGLContext
    from qtpy.QtWidgets import QApplication

    _app = QApplication.instance() or QApplication([])
    return bool(QOpenGLContext().create())


def make_viewer(request: Any) -> Any:
    """A napari viewer (``make_napari_viewer``), or a headless ``ViewerModel`` without OpenGL.

    Call it from a module's ``viewer`` fixture (which also requests ``qtbot``).
    """
    if opengl_available():
        return request.getfixturevalue("make_napari_viewer")()
    from napari.components import ViewerModel

    return ViewerModel()


def capture_errors(monkeypatch: Any) -> list[str]:
    """Record the messages passed to napari's ``show_error`` (instead of showing them)."""
    import napari.utils.notifications as notifications

    seen: list[str] = []
    monkeypatch.setattr(notifications, "show_error", seen.append)
    return seen


#: uint16 labels keep napari's label texture path that works without OpenGL (offscreen Qt)
LABEL_DTYPE = np.uint16


def bf_scene(shape: tuple[int, int] = (192, 224), n: int = 8, seed: int = 1):
    """A raw (Y, X) uint16 brightfield image with ``n`` discs and their ground-truth labels."""
    discs = random_discs(shape, n, seed=seed, r=(7.0, 11.0), margin=4)
    return disc_image(shape, discs, noise=20.0, seed=seed)


def use_fake_model(monkeypatch: Any) -> FakeDiscModel:
    """Make the Detect widget use the fake disc model whatever model is chosen."""
    from napari_hrs._widgets import _detect

    model = FakeDiscModel()
    monkeypatch.setattr(_detect, "resolve_model", lambda choice, checkpoint: model)
    return model


def cells_table(labels: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """A detection-like table for ``labels`` (id, class, score, box, centroid, area)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    ids = np.unique(labels)[1:]
    rows = []
    objs = ndi.find_objects(labels)
    for lab in ids:
        sl = objs[lab - 1]
        ys, xs = np.nonzero(labels[sl] == lab)
        rows.append({"id": int(lab), "class_id": 0, "class_name": "hRS",
                     "score": round(float(rng.uniform(0.5, 1.0)), 4),
                     "x0": sl[1].start, "y0": sl[0].start, "x1": sl[1].stop, "y1": sl[0].stop,
                     "centroid_y_px": sl[0].start + ys.mean(),
                     "centroid_x_px": sl[1].start + xs.mean(), "area_px": len(ys)})  # fmt: skip
    return pd.DataFrame(rows)


def add_marker_layers(viewer: Any, shape=(96, 128), n: int = 14, seed: int = 0):
    """PRM1 / PNA image layers and a detection-like cells layer; returns (layers, truth)."""
    from napari_hrs._widgets._display import features_table

    lab, chans, truth = marker_scene(shape, n, seed)
    lab = lab.astype(LABEL_DTYPE)
    meta = {"pixel_size_um": 0.5}
    prm1 = viewer.add_image(chans["PRM1"], name="PRM1", metadata={**meta, "role": "PRM1"})
    pna = viewer.add_image(chans["PNA"], name="PNA", metadata={**meta, "role": "PNA"})
    bf = viewer.add_image(255 - lab.astype(np.uint8) * 3, name="BF",
                          metadata={**meta, "role": "brightfield"})  # fmt: skip
    table = cells_table(lab)
    cells = viewer.add_labels(lab, name="cells", metadata=dict(meta),
                              features=features_table(table))  # fmt: skip
    return {"PRM1": prm1, "PNA": pna, "brightfield": bf, "cells": cells}, truth, table
