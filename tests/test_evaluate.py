"""Evaluation numbers on hand-made cases with known answers, checked against pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from _train_helpers import CATS, write_tiny_coco
from napari_hrs.errors import DatasetError
from napari_hrs.train.dataset import InstanceDataset, encode_mask
from napari_hrs.train.evaluate import coco_metrics, evaluate_detections


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> InstanceDataset:
    return InstanceDataset.from_coco(write_tiny_coco(tmp_path_factory.mktemp("coco"), n_images=3))


def _results_from_gt(ds: InstanceDataset, category: str, keep=lambda i: True, score=0.9):
    """A perfect detection (mask and box from the GT) for every GT instance of ``category``."""
    cid = {v: k for k, v in ds.categories.items()}[category]
    out, k = [], 0
    for idx, rec in enumerate(ds.records):
        s = ds[idx]
        for m, c in zip(s.masks, s.category_ids, strict=True):
            if c != cid:
                continue
            if keep(k):
                ys, xs = np.nonzero(m)
                out.append(
                    {
                        "image_id": rec.image_id,
                        "category_id": int(cid),
                        "score": score,
                        "bbox": [
                            float(xs.min()),
                            float(ys.min()),
                            float(xs.max() + 1 - xs.min()),
                            float(ys.max() + 1 - ys.min()),
                        ],
                        "segmentation": encode_mask(m),
                    }
                )
            k += 1
    return out, k


def test_perfect_detections_give_ap_one(tiny):
    results, n = _results_from_gt(tiny, "round_spermatid")
    assert n >= 2
    rep = evaluate_detections(tiny, results, ["round_spermatid"])
    for kind in ("bbox", "segm"):
        assert getattr(rep, kind)["AP"] == pytest.approx(1.0)
        assert getattr(rep, kind)["AP50"] == pytest.approx(1.0)
    assert rep.per_class["round_spermatid"]["segm_AP"] == pytest.approx(1.0)
    assert rep.lookalikes["round_spermatid"]["fraction"] == pytest.approx(1.0)
    assert rep.lookalikes["red_blood_cell"]["called"] == 0
    assert rep.meta["precision_at_operating"] == pytest.approx(1.0)
    assert "Average Precision" in rep.summary["segm"]


@pytest.mark.parametrize("n_missed", [1, 2])
def test_missed_cells_give_known_ap(tiny, n_missed):
    """With n GT and the first n - m found (all correct), AP = COCO's 101-point interpolation
    of a curve with precision 1 up to recall (n - m) / n and nothing after."""
    _, n = _results_from_gt(tiny, "round_spermatid")
    results, _ = _results_from_gt(tiny, "round_spermatid", keep=lambda i: i < n - n_missed)
    rep = evaluate_detections(tiny, results, ["round_spermatid"])
    recall = (n - n_missed) / n
    expected = np.sum(np.linspace(0, 1, 101) <= recall + 1e-9) / 101
    assert rep.segm["AP"] == pytest.approx(expected, abs=1e-6)
    assert rep.bbox["AP50"] == pytest.approx(expected, abs=1e-6)


def test_matches_pycocotools_directly(tiny):
    """Noisy detections: our numbers equal a plain COCOeval run on the same input."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    results, _ = _results_from_gt(tiny, "round_spermatid")
    for r in results:
        r["score"] = float(rng.uniform(0.1, 1))
        r["bbox"] = [v + float(rng.normal(0, 1.5)) for v in r["bbox"]]
    fp, _ = _results_from_gt(tiny, "lymphocyte", score=0.6)
    for r in fp:
        r["category_id"] = 1
    rep = evaluate_detections(tiny, results + fp, ["round_spermatid"])

    gt = tiny.to_coco()
    gt["annotations"] = [a for a in gt["annotations"] if a["category_id"] == 1]
    gt["categories"] = gt["categories"][:1]
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = gt
        cg.createIndex()
        ev = COCOeval(cg, cg.loadRes(results + fp), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert rep.bbox["AP"] == pytest.approx(ev.stats[0])
    assert rep.bbox["AP75"] == pytest.approx(ev.stats[2])
    assert 0 < rep.bbox["AP"] < 1
    # every lymphocyte was called hRS at 0.6 >= operating threshold 0.5
    assert rep.lookalikes["lymphocyte"]["fraction"] == pytest.approx(1.0)
    assert rep.lookalikes["red_blood_cell"]["fraction"] == 0.0
    strict = evaluate_detections(tiny, results + fp, ["round_spermatid"], operating_threshold=0.7)
    assert strict.lookalikes["lymphocyte"]["called"] == 0


def test_marker_concordance(tiny):
    results, _ = _results_from_gt(tiny, "round_spermatid")
    fp, _ = _results_from_gt(tiny, "red_blood_cell")
    for r in fp:
        r["category_id"] = 1
    rep = evaluate_detections(tiny, results + fp, ["round_spermatid"])
    attrs = [a.get("attributes", {}) for r in tiny.records for a in r.annotations]
    sperm = [a for a in attrs if a["PNA_positive"]]  # helpers: every hRS is PNA+
    n_rbc = sum(1 for r in tiny.records for a in r.annotations if a["category_id"] == 2)
    m = rep.markers
    assert m["n_called_matched"] == len(sperm) + n_rbc
    assert m["PNA_positive"] == pytest.approx(len(sperm) / (len(sperm) + n_rbc))
    prm = sum(a["PRM1_positive"] for a in sperm)
    assert m["PRM1_positive"] == pytest.approx(prm / (len(sperm) + n_rbc))
    assert m["either"] == pytest.approx(m["PNA_positive"])
    assert m["both"] == pytest.approx(m["PRM1_positive"])
    assert "Marker concordance" in rep.text()


def test_no_detections_and_json(tiny, tmp_path):
    rep = evaluate_detections(tiny, [], ["round_spermatid"])
    assert rep.segm["AP"] == 0.0 and rep.markers["n_called"] == 0
    path = rep.save_json(tmp_path / "r" / "report.json")
    import json

    d = json.loads(path.read_text())
    assert d["segm"]["AP"] == 0.0 and "lookalikes" in d


def test_unknown_class_is_an_error(tiny):
    from napari_hrs.errors import ParameterError

    with pytest.raises(DatasetError, match="not categories"):
        evaluate_detections(tiny, [], ["elongated_spermatid"])
    with pytest.raises(ParameterError, match="choose one of"):
        evaluate_detections(tiny, [], ["round_spermatid"], target_class="hRS")


def test_coco_metrics_without_gt():
    gt = {
        "images": [{"id": 1, "height": 4, "width": 4}],
        "annotations": [],
        "categories": [{"id": 1, "name": CATS[0]}],
    }
    metrics, prec, _, _ = coco_metrics(gt, [])
    assert metrics["AP"] == -1.0 and prec is None


def test_pr_plot(tiny, tmp_path):
    from napari_hrs.train.plots import plot_pr_curves

    results, _ = _results_from_gt(tiny, "round_spermatid", keep=lambda i: i % 2 == 0)
    rep = evaluate_detections(tiny, results, ["round_spermatid"])
    path = plot_pr_curves(rep, tmp_path / "pr.png")
    assert path.stat().st_size > 1000


def test_detections_to_results_pastes_masks():
    from napari_hrs.engine.structures import Detections
    from napari_hrs.train.evaluate import detections_to_results

    probs = np.zeros((1, 28, 28), np.float32)
    probs[0, 7:21, 7:21] = 1.0  # the central half of the box
    dets = Detections(
        boxes=np.array([[10, 20, 38, 48]], np.float32), scores=np.array([0.8], np.float32),
        classes=np.array([0]), mask_probs=probs, image_size=(64, 64),
    )  # fmt: skip
    (res,) = detections_to_results(dets, image_id=5, cat_ids=[3])
    assert res["image_id"] == 5 and res["category_id"] == 3 and res["score"] == pytest.approx(0.8)
    assert res["bbox"] == [10.0, 20.0, 28.0, 28.0]
    from pycocotools import mask as mask_utils

    m = mask_utils.decode({"size": res["segmentation"]["size"],
                           "counts": res["segmentation"]["counts"].encode()})  # fmt: skip
    ys, xs = np.nonzero(m)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (27, 40, 17, 30)


def test_evaluate_runs_a_model_end_to_end(tmp_path):
    """A (barely trained) model: the report has every section and writes its files."""
    from _train_helpers import FAST_FIT
    from napari_hrs.train import evaluate, fit

    data = write_tiny_coco(tmp_path, n_images=2, size=64)
    model = fit(data, out=tmp_path / "m.pt", iters=2, **FAST_FIT)
    calls = []
    rep = evaluate(model, data, device="cpu", out_dir=tmp_path / "ev",
                   progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert calls[-1] == (2, 2)
    assert -1 <= rep.segm["AP"] <= 1 and rep.n_images == 2
    assert set(rep.lookalikes) == set(CATS)
    assert (tmp_path / "ev" / "report.json").is_file()
    assert (tmp_path / "ev" / "pr_curve.png").is_file()
    # bad arguments fail before the inference (it once ran first, then a KeyError)
    from napari_hrs.errors import ParameterError

    calls.clear()
    with pytest.raises(ParameterError, match=r"target class 'nope' is not a class of the model"):
        evaluate(model, data, device="cpu", target_class="nope",
                 progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ParameterError, match="afile is a file"):
        evaluate(model, data, device="cpu", out_dir=tmp_path / "afile",
                 progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert calls == [] and (tmp_path / "afile").read_text() == "x"


def test_a_cell_is_called_once_by_its_best_class(tiny):
    """Per-class NMS can return one lymphocyte as hRS (0.6) and as lymphocyte (0.9): the app
    keeps the higher-scoring class, so it is not called hRS; alone, the 0.6 hRS call counts."""
    names = ["round_spermatid", "lymphocyte"]
    ids = {v: k for k, v in tiny.categories.items()}
    hrs, _ = _results_from_gt(tiny, "round_spermatid")
    as_hrs, n_lyo = _results_from_gt(tiny, "lymphocyte", score=0.6)
    for r in as_hrs:
        r["category_id"] = ids["round_spermatid"]
    as_lyo, _ = _results_from_gt(tiny, "lymphocyte", score=0.9)
    rep = evaluate_detections(tiny, hrs + as_hrs + as_lyo, names)
    assert n_lyo > 0 and rep.lookalikes["lymphocyte"]["called"] == 0
    assert rep.lookalikes["round_spermatid"]["fraction"] == pytest.approx(1.0)
    weaker = [dict(r, score=0.55) for r in as_lyo]  # the hRS call now wins
    rep = evaluate_detections(tiny, hrs + as_hrs + weaker, names)
    assert rep.lookalikes["lymphocyte"]["called"] == n_lyo
