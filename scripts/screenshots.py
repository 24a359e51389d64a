"""Regenerate the user-guide screenshots in docs/images/ (one per widget, plus the demo).

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshots.py [OUT_DIR]

Each screenshot is napari's whole window (canvas and docked widget) after the widget did its
job on the bundled sample acquisition with the bundled model: Detect (run, score slider moved),
Compare (side by side, gallery of one cell), Markers (quantified, scatter plot docked), Export
(the form, after writing a CSV) and Train (a 20-iteration fine-tune on the sample's
ground-truth hRS "painted" as a Labels layer, with the held-out evaluation). The widgets run their real thread workers;
this script waits for them.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wait(job, timeout: float = 600.0) -> None:
    """Process Qt events until a widget's job is done."""
    from qtpy.QtWidgets import QApplication

    t0 = time.time()
    while job.running:
        QApplication.processEvents()
        time.sleep(0.02)
        if time.time() - t0 > timeout:
            raise TimeoutError("the widget's job did not finish")
    settle()


def settle(seconds: float = 0.5) -> None:
    from qtpy.QtWidgets import QApplication

    t0 = time.time()
    while time.time() - t0 < seconds:
        QApplication.processEvents()
        time.sleep(0.02)


def sample_viewer():
    from napari_hrs._napari.demo import open_demo_viewer

    return open_demo_viewer(detect=False, widgets=False)


def shoot(viewer, path: Path, size: tuple[int, int] = (1500, 950)) -> None:
    settle()
    viewer.window.resize(*size)
    settle()
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")


def main(out: Path) -> int:
    from napari_hrs._widgets._common import avoid_triton_crash

    avoid_triton_crash()
    from napari_hrs._napari.demo import open_demo_viewer
    from napari_hrs._widgets._compare import CompareWidget
    from napari_hrs._widgets._detect import DetectWidget
    from napari_hrs._widgets._export import TABLE, ExportWidget
    from napari_hrs._widgets._markers import MarkersWidget
    from napari_hrs._widgets._train import TrainWidget

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hrs-shots-"))

    v = open_demo_viewer()  # the demo: detections coloured by marker category
    shoot(v, out / "demo.png")
    v.close()

    v = sample_viewer()
    det = DetectWidget(v)
    det_dock = v.window.add_dock_widget(det, name="Detect round spermatids")
    det.run()
    wait(det.job)
    det.shown.value = 0.8
    shoot(v, out / "widget-detect.png")

    mk = MarkersWidget(v)
    mk_dock = v.window.add_dock_widget(mk, name="PRM1 / PNA markers")
    mk.cells.value = det.result_layer
    mk.run()
    wait(mk.job)
    mk.show_scatter()
    shoot(v, out / "widget-markers.png")

    for dock in (det_dock, mk_dock):  # the scatter plot stays: it selects cells
        v.window.remove_dock_widget(dock)
    cmp_ = CompareWidget(v)
    v.window.add_dock_widget(cmp_, name="Compare channels")
    cmp_.cells.value = det.result_layer
    cmp_.side_by_side()
    feats = det.result_layer.features
    hrs = feats[feats["class_name"] == "round_spermatid"].sort_values("score", ascending=False)
    best = hrs.iloc[0]
    det.result_layer.selected_label = int(best["index"])
    cmp_.update_gallery()
    v.reset_view()
    scale = float(det.result_layer.scale[-1])
    v.camera.center = (float(best["centroid_y_px"]) * scale, float(best["centroid_x_px"]) * scale)
    v.camera.zoom = v.camera.zoom * 3
    shoot(v, out / "widget-compare.png", size=(1900, 950))
    cmp_.overlay()

    ex = ExportWidget(v)
    v.window.add_dock_widget(ex, name="Export")
    ex.cells.value = det.result_layer
    ex.kind.value = TABLE
    ex.path.value = work / "cells.csv"
    ex.run()
    wait(ex.job)
    shoot(v, out / "widget-export.png")
    v.close()

    import numpy as np

    from napari_hrs.synth import read_ground_truth
    from napari_hrs.synth.sample import sample_path

    v = sample_viewer()
    truth_labels, truth = read_ground_truth(sample_path())
    hrs = truth.loc[truth["cell_type"] == "round_spermatid", "label_id"].to_numpy()
    truth_labels = np.asarray(truth_labels)
    painted = v.add_labels(np.where(np.isin(truth_labels, hrs), truth_labels, 0),
                           name="painted hRS", scale=v.layers["ground_truth"].scale)  # fmt: skip
    tr = TrainWidget(v)
    v.window.add_dock_widget(tr, name="Train on annotated cells")
    tr.labels.value = painted
    tr.iters.value, tr.crop.value = 20, 256
    tr.out.value = work / "tuned.pt"
    tr.run()
    wait(tr.job, timeout=1800)
    shoot(v, out / "widget-train.png")
    v.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "images"))
