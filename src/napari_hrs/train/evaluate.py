"""Evaluate a model on a COCO dataset: pycocotools mAP, look-alike confusion, marker concordance.

:func:`evaluate` runs the :class:`~napari_hrs.engine.predictor.Predictor` on every image (with a
low score threshold, as AP needs the whole precision-recall curve) and hands the detections to
:func:`evaluate_detections`, which computes

- COCO ``bbox`` and ``segm`` mAP@[.5:.95], AP50, AP75, overall and per class, with pycocotools'
  :class:`~pycocotools.cocoeval.COCOeval` (its standard printed summary is kept in the report);
- the look-alike confusion: how many ground-truth cells of each category were matched
  (mask IoU >= 0.5) by a detection *called* hRS, i.e. of the target class with a score at or above
  the operating threshold, after keeping one class per cell as the app does
  (:func:`one_call_per_cell`). For red blood cells and lymphocytes this is the false-call rate;
- marker concordance (the paper's statistic): of the called detections matching a ground-truth
  cell, the fraction whose cell is PRM1+, PNA+, either, both (from annotation ``attributes``).

Only categories named in the model's ``class_names`` are ground truth for AP; the other
categories stay in the dataset for the confusion analysis.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from napari_hrs.errors import Cancelled, DatasetError, ParameterError
from napari_hrs.train.dataset import InstanceDataset, decode_segmentation, encode_mask

__all__ = ["EvalReport", "coco_metrics", "evaluate", "evaluate_detections", "one_call_per_cell"]

_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")
MARKERS = ("PRM1_positive", "PNA_positive")


@dataclass
class EvalReport:
    """Everything :func:`evaluate` measured. Fractions in [0, 1]; AP values in [0, 1]
    (-1 where COCOeval has no ground truth)."""

    bbox: dict[str, float]
    segm: dict[str, float]
    per_class: dict[str, dict[str, float]]
    lookalikes: dict[str, dict[str, float]]
    markers: dict[str, float]
    target_class: str
    score_threshold: float
    operating_threshold: float
    n_images: int
    summary: dict[str, str] = field(default_factory=dict)
    pr_curves: dict[str, Any] = field(default_factory=dict, repr=False)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("pr_curves")
        return d

    def save_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=float))
        tmp.replace(path)
        return path

    def text(self) -> str:
        """A human-readable summary: COCOeval's tables, then confusion and markers."""
        lines = []
        for kind in ("bbox", "segm"):
            if kind in self.summary:
                lines += [f"COCOeval {kind} ({self.target_class!r} and other model classes):"]
                lines += [self.summary[kind].rstrip()]
        for name, row in self.per_class.items():
            lines.append(
                f"{name}: segm AP {row['segm_AP']:.3f}  AP50 {row['segm_AP50']:.3f}  "
                f"AP75 {row['segm_AP75']:.3f} | bbox AP {row['bbox_AP']:.3f}"
            )
        thr = self.operating_threshold
        lines.append(
            f"Ground-truth cells called {self.target_class} (score >= {thr:g}, IoU >= 0.5):"
        )
        for name, row in self.lookalikes.items():
            lines.append(
                f"  {name:>22}: {int(row['called']):5d} / {int(row['n_gt']):5d}  ({row['fraction']:.1%})"
            )
        if self.markers.get("n_called_matched", 0):
            m = self.markers
            lines.append(
                f"Marker concordance of {int(m['n_called_matched'])} matched calls: PRM1+ "
                f"{m['PRM1_positive']:.1%}, PNA+ {m['PNA_positive']:.1%}, either "
                f"{m['either']:.1%}, both {m['both']:.1%}"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------- COCOeval
def coco_metrics(
    gt: dict, results: list[dict], iou_type: str = "segm", max_dets: int = 100
) -> tuple[dict[str, float], np.ndarray | None, str, list[int]]:
    """Run pycocotools' COCOeval.

    Parameters
    ----------
    gt : COCO ground-truth dict (images, annotations, categories)
    results : COCO result dicts (``image_id``, ``category_id``, ``score``, ``bbox`` xywh and/or
        ``segmentation`` RLE)
    iou_type : ``"segm"`` or ``"bbox"``
    max_dets : detections per image considered (COCO's largest maxDets)

    Returns
    -------
    metrics : AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100
    precision : COCOeval's ``eval["precision"]`` array (T, R, K, A, M), or None without results
    summary : the text COCOeval.summarize() printed
    cat_ids : the category ids along precision's K axis
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco_gt = COCO()
        coco_gt.dataset = {
            k: v for k, v in gt.items() if k in ("images", "annotations", "categories")
        }
        coco_gt.createIndex()
    cat_ids = sorted(coco_gt.getCatIds())
    if not results:
        has_gt = bool(gt.get("annotations"))
        value = 0.0 if has_gt else -1.0
        metrics = dict.fromkeys(_METRIC_NAMES, value)
        return metrics, None, "no detections: every AP is 0\n", cat_ids
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
        summary_io = io.StringIO()
        with contextlib.redirect_stdout(summary_io):
            ev.summarize()
    metrics = {k: float(v) for k, v in zip(_METRIC_NAMES, ev.stats, strict=False)}
    return metrics, ev.eval["precision"], summary_io.getvalue(), list(ev.params.catIds)


def _class_ap(precision: np.ndarray | None, k: int) -> dict[str, float]:
    """AP, AP50, AP75 of category index ``k`` (area all, largest maxDets)."""
    if precision is None:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}

    def mean(p):
        p = p[p > -1]
        return float(p.mean()) if p.size else -1.0

    pk = precision[:, :, k, 0, -1]  # (T, R)
    return {"AP": mean(pk), "AP50": mean(pk[0]), "AP75": mean(pk[5])}


# --------------------------------------------------------------------------- detections -> COCO
def detections_to_results(dets, image_id: int, cat_ids: Sequence[int]) -> list[dict]:
    """COCO result dicts for one image's :class:`~napari_hrs.engine.structures.Detections`.

    Masks are pasted into the image (probability >= 0.5) and encoded as RLE; ``cat_ids[c]`` is
    the COCO category of model class ``c``.
    """
    from napari_hrs.engine.masks import paste_mask

    h, w = dets.image_size
    out = []
    for i in range(len(dets)):
        box = np.asarray(dets.boxes[i], np.float64)
        part, (y0, x0) = paste_mask(dets.mask_probs[i], box, (h, w), threshold=0.5)
        mask = np.zeros((h, w), bool)
        mask[y0 : y0 + part.shape[0], x0 : x0 + part.shape[1]] = part
        out.append(
            {
                "image_id": int(image_id),
                "category_id": int(cat_ids[int(dets.classes[i])]),
                "score": float(dets.scores[i]),
                "bbox": [
                    float(box[0]),
                    float(box[1]),
                    float(box[2] - box[0]),
                    float(box[3] - box[1]),
                ],
                "segmentation": encode_mask(mask),
            }
        )
    return out


# --------------------------------------------------------------------------- confusion, markers
def _rle(r: dict) -> dict:
    rle = dict(r["segmentation"])
    if isinstance(rle["counts"], str):
        rle["counts"] = rle["counts"].encode("ascii")
    return rle


def one_call_per_cell(results: list[dict], merge_iou: float = 0.5) -> list[dict]:
    """The detections the app keeps: per image, greedily by descending score, a detection is
    dropped when its mask overlaps an already kept one (of any class) by IoU >= ``merge_iou``.

    The model's NMS is per class, so one cell can come back as two classes (hRS 0.6 and
    lymphocyte 0.9); :func:`napari_hrs.engine.detect.detect` keeps only the higher-scoring
    one (the :class:`~napari_hrs.engine.tiling.Stitcher` rule), and so does this.
    """
    by_image: dict[int, list[dict]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    kept: list[dict] = []
    for dets in by_image.values():
        dets = sorted(dets, key=lambda r: -r["score"])
        keep: list[dict] = []
        for r in dets:
            if keep:
                ious = mask_utils.iou([_rle(r)], [_rle(k) for k in keep], [0] * len(keep))[0]
                if float(np.max(ious)) >= merge_iou:
                    continue
            keep.append(r)
        kept += keep
    return kept


def _called_matches(dataset: InstanceDataset, results: list[dict], target_cat: int, thr: float):
    """Greedy one-to-one mask matching (IoU >= 0.5) of called detections to GT cells of any
    category. A call is a detection scoring at least ``thr`` that is of the target class after
    :func:`one_call_per_cell`. Yields (annotation, matched: bool) for every GT annotation, and
    the number of called detections."""
    called_by_image: dict[int, list[dict]] = {}
    for r in one_call_per_cell([r for r in results if r["score"] >= thr]):
        if r["category_id"] == target_cat:
            called_by_image.setdefault(r["image_id"], []).append(r)
    pairs, n_called = [], 0
    for rec in dataset.records:
        anns = [a for a in rec.annotations if not a.get("iscrowd", 0)]
        called = sorted(called_by_image.get(rec.image_id, []), key=lambda r: -r["score"])
        n_called += len(called)
        matched = np.zeros(len(anns), bool)
        if anns and called:
            gt_rles = [
                encode_mask(decode_segmentation(a["segmentation"], rec.height, rec.width))
                for a in anns
            ]
            gts = [dict(g, counts=g["counts"].encode("ascii")) for g in gt_rles]
            for r in called:
                ious = mask_utils.iou([_rle(r)], gts, [0] * len(gts))[0]
                ious = np.where(matched, -1.0, ious)
                j = int(np.argmax(ious))
                if ious[j] >= 0.5:
                    matched[j] = True
        pairs += list(zip(anns, matched, strict=True))
    return pairs, n_called


def check_classes(
    dataset: InstanceDataset, class_names: Sequence[str], target_class: str | None
) -> str:
    """The target class, after checking that every model class is a category of ``dataset``
    and that ``target_class`` (default: the first model class) is a model class."""
    name_to_id = {v: k for k, v in dataset.categories.items()}
    missing = [n for n in class_names if n not in name_to_id]
    if missing:
        raise DatasetError(
            f"model classes {missing} are not categories of {dataset.source or 'the dataset'} "
            f"({sorted(name_to_id)}); evaluate on data annotated with the model's classes"
        )
    target = target_class or class_names[0]
    if target not in class_names:
        raise ParameterError(
            f"target class {target!r} is not a class of the model; choose one of "
            f"{list(class_names)}"
        )
    return target


def evaluate_detections(
    dataset: InstanceDataset,
    results: list[dict],
    class_names: Sequence[str],
    *,
    target_class: str | None = None,
    score_threshold: float = 0.05,
    operating_threshold: float = 0.5,
    max_dets: int = 100,
) -> EvalReport:
    """Evaluate COCO-format ``results`` (category ids of ``dataset``) against ``dataset``.

    Parameters
    ----------
    dataset : ground truth, with every category (look-alikes included)
    results : COCO result dicts, see :func:`coco_metrics`
    class_names : the model's classes; the categories of ``dataset`` with these names are the
        ground truth for AP
    target_class : the class whose calls are analysed (default: the first of ``class_names``)
    score_threshold : results below it are ignored for AP
    operating_threshold : score at or above which a detection counts as a call
    """
    target = check_classes(dataset, class_names, target_class)
    name_to_id = {v: k for k, v in dataset.categories.items()}
    cat_ids = [name_to_id[n] for n in class_names]
    coco = dataset.to_coco()
    gt = dict(coco, categories=[c for c in coco["categories"] if c["id"] in cat_ids])
    gt["annotations"] = [a for a in coco["annotations"] if a["category_id"] in cat_ids]
    kept = [r for r in results if r["score"] >= score_threshold and r["category_id"] in cat_ids]

    metrics, summaries, precisions = {}, {}, {}
    for iou_type in ("bbox", "segm"):
        m, prec, text, ids = coco_metrics(gt, kept, iou_type, max_dets)
        metrics[iou_type], summaries[iou_type], precisions[iou_type] = m, text, prec
    per_class = {}
    for k, (name, cid) in enumerate(zip(class_names, cat_ids, strict=True)):
        row = {}
        for iou_type in ("bbox", "segm"):
            kk = ids.index(cid) if cid in ids else k
            for key, v in _class_ap(precisions[iou_type], kk).items():
                row[f"{iou_type}_{key}"] = v
        per_class[name] = row

    pairs, n_called = _called_matches(dataset, results, name_to_id[target], operating_threshold)
    lookalikes: dict[str, dict[str, float]] = {}
    for name in dataset.category_names:
        hits = [m for a, m in pairs if dataset.categories[int(a["category_id"])] == name]
        n = len(hits)
        lookalikes[name] = {
            "n_gt": n,
            "called": int(sum(hits)),
            "fraction": sum(hits) / n if n else 0.0,
        }
    others = [v for k, v in lookalikes.items() if k != target]
    n_other = sum(v["n_gt"] for v in others)
    lookalike_calls = sum(v["called"] for v in others)
    matched = [a for a, m in pairs if m]
    markers = {"n_called": n_called, "n_called_matched": len(matched)}
    flags = {
        k: np.array([bool(a.get("attributes", {}).get(k, False)) for a in matched]) for k in MARKERS
    }
    if matched:
        markers.update({k: float(v.mean()) for k, v in flags.items()})
        markers["either"] = float((flags[MARKERS[0]] | flags[MARKERS[1]]).mean())
        markers["both"] = float((flags[MARKERS[0]] & flags[MARKERS[1]]).mean())
    else:
        markers.update({k: 0.0 for k in (*MARKERS, "either", "both")})
    return EvalReport(
        bbox=metrics["bbox"],
        segm=metrics["segm"],
        per_class=per_class,
        lookalikes=lookalikes,
        markers=markers,
        target_class=target,
        score_threshold=score_threshold,
        operating_threshold=operating_threshold,
        n_images=len(dataset),
        summary=summaries,
        pr_curves={k: v for k, v in precisions.items() if v is not None},
        meta={
            "class_names": list(class_names),
            "lookalike_rate": lookalike_calls / n_other if n_other else 0.0,
            "precision_at_operating": (
                lookalikes[target]["called"] / n_called if n_called else 0.0
            ),
            "recall_at_operating": lookalikes[target]["fraction"],
        },
    )


# --------------------------------------------------------------------------- end to end
def evaluate(
    model_or_loaded: Any,
    dataset: InstanceDataset | str | Path,
    *,
    target_class: str | None = None,
    score_threshold: float = 0.05,
    operating_threshold: float = 0.5,
    device: str | None = None,
    batch_size: int = 2,
    max_dets: int = 100,
    out_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    engine: str = "native",
) -> EvalReport:
    """Run a model on a COCO dataset and evaluate it (see the module docstring).

    Parameters
    ----------
    model_or_loaded : a model spec for :func:`napari_hrs.engine.checkpoint.load_model`
        (``"compact"``, a checkpoint path), a ``Loaded`` checkpoint, or a model with ``cfg``
    dataset : an :class:`InstanceDataset` or the path of a COCO JSON (images beside it)
    score_threshold : the predictor's threshold (low, so AP sees the whole PR curve)
    operating_threshold : score from which a detection counts as "called hRS"
    out_dir : if given, ``report.json`` and ``pr_curve.png`` are written there
    progress, cancel : callbacks (images done, total) / return True to stop (raises Cancelled)
    engine : ``"native"`` or ``"detectron2"`` (see :class:`~napari_hrs.engine.predictor.Predictor`)
    """
    from napari_hrs.engine.intensity import estimate_range
    from napari_hrs.engine.predictor import Predictor
    from napari_hrs.train.dataset import to_channels

    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ParameterError(f"out_dir {out_dir} is a file; pass a folder for report.json and "
                             "pr_curve.png")  # fmt: skip
    ds = dataset if isinstance(dataset, InstanceDataset) else InstanceDataset.from_coco(dataset)
    predictor = Predictor(
        model_or_loaded,
        device=device,
        score_threshold=score_threshold,
        max_detections=max_dets,
        batch_size=batch_size,
        engine=engine,
    )
    class_names, in_channels = predictor.class_names, predictor.input_channels
    check_classes(ds, class_names, target_class)  # before the inference, not after it
    name_to_id = {v: k for k, v in ds.categories.items()}
    cat_ids = [name_to_id.get(n, -1) for n in class_names]
    results: list[dict] = []
    n = len(ds)
    for start in range(0, n, batch_size):
        if cancel is not None and cancel():
            raise Cancelled(f"evaluation cancelled after {start} of {n} images")
        recs = ds.records[start : start + batch_size]
        images = []
        for rec in recs:
            raw = to_channels(rec.load(), in_channels).astype(np.float32)
            rng = estimate_range(raw.reshape(-1, raw.shape[-1]))
            img = rng.apply(raw)
            images.append(img[0] if img.shape[0] == 1 else img)
        for rec, dets in zip(recs, predictor.predict(images), strict=True):
            results += detections_to_results(dets, rec.image_id, cat_ids)
        if progress is not None:
            progress(min(start + batch_size, n), n)
    results = [r for r in results if r["category_id"] >= 0]
    report = evaluate_detections(
        ds,
        results,
        class_names,
        target_class=target_class,
        score_threshold=score_threshold,
        operating_threshold=operating_threshold,
        max_dets=max_dets,
    )
    report.meta["dataset"] = ds.source
    if out_dir is not None:
        from napari_hrs.train.plots import plot_pr_curves

        out_dir = Path(out_dir)
        report.save_json(out_dir / "report.json")
        plot_pr_curves(report, out_dir / "pr_curve.png")
    return report
