"""The detection result store: an NGFF label image, an instance table and the run's metadata.

Layout (one directory, a zarr group)::

    RESULT.zarr/                 or   IMAGE.ome.zarr/labels/<name>/
        zarr.json | .zattrs            NGFF multiscales + image-label (+ "napari_hrs" summary)
        0/, 1/, ...                    uint32 labels (Y, X), 0 = background, ids 1..N; 2x pyramid
        detections.csv                 one row per instance (TABLE_COLUMNS)
        run.json                       status, provenance, parameters, timing

The group is built under a hidden sibling name and renamed into place when the run ends
(complete or cancelled), so a result path never holds a half-written store; ``run.json`` is
replaced atomically and says ``"status": "complete"`` or ``"incomplete"`` (cancelled, with the
number of tiles done). Label ids equal the table's ``id`` column.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrs.engine.masks import paint_labels
from napari_hrs.engine.tiling import Instance
from napari_hrs.errors import AcquisitionError

__all__ = [
    "META_NAME",
    "TABLE_COLUMNS",
    "TABLE_NAME",
    "DetectionResult",
    "ResultWriter",
    "find_result",
    "read_detection_result",
]

TABLE_NAME = "detections.csv"
META_NAME = "run.json"
#: instance table columns; pixels of the detected level, µm where named (NaN: unknown pixel size)
TABLE_COLUMNS = (
    "id", "class_id", "class_name", "score", "x0", "y0", "x1", "y1",
    "centroid_y_px", "centroid_x_px", "centroid_y_um", "centroid_x_um", "area_px", "area_um2",
)  # fmt: skip


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return str(v)


def _ome(attrs: dict) -> dict:
    return attrs["ome"] if isinstance(attrs.get("ome"), dict) else attrs


class ResultWriter:
    """Write a detection result chunk by chunk (see the module docstring for the layout).

    Instances arrive final (:meth:`add`: ids assigned in arrival order, table rows written at
    once) and are painted into the label image when :meth:`advance` declares every row above
    ``y`` final; only instances still reaching below the written rows are held.

    Parameters
    ----------
    target : Path
        The result directory to create (must not exist, or ``overwrite``).
    shape : (H, W)
        Label image size in pixels.
    class_names : sequence of str
    pixel_size_um : float or None
        Pixel size of the labels (µm), for the µm columns and the NGFF scale.
    chunk : int
        Zarr chunk edge (pixels); labels are painted and written one chunk at a time.
    zarr_format : 2 or 3
        NGFF 0.4 (zarr v2) or 0.5 (zarr v3).
    labels_group : Path, optional
        The ``labels`` group of an OME-Zarr image to register ``target``'s name in (when the
        result is written inside the image).
    """

    def __init__(self, target: Path, shape: tuple[int, int], *, class_names, pixel_size_um=None,
                 chunk: int = 1024, zarr_format: int = 3, labels_group: Path | None = None,
                 overwrite: bool = False, metadata: dict | None = None) -> None:  # fmt: skip
        import zarr

        self.target = Path(target)
        if self.target.exists() and not overwrite:
            raise FileExistsError(f"{self.target} exists; pass overwrite=True (CLI: --overwrite) "
                                  "or another output path")  # fmt: skip
        self.shape = (int(shape[0]), int(shape[1]))
        self.chunk = int(chunk)
        self.class_names = [str(c) for c in class_names]
        self.pixel_size_um = pixel_size_um
        self.zarr_format = int(zarr_format)
        self.labels_group = labels_group
        self.overwrite = overwrite
        self.tmp = self.target.with_name(f".{self.target.name}.partial-{uuid.uuid4().hex[:8]}")
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.group = zarr.open_group(str(self.tmp), mode="w", zarr_format=self.zarr_format)
        self.array = self.group.create_array(
            "0", shape=self.shape, chunks=(min(self.chunk, self.shape[0]) or 1,
                                           min(self.chunk, self.shape[1]) or 1),
            dtype="uint32", fill_value=0,
        )  # fmt: skip
        self._csv_file = open(self.tmp / TABLE_NAME, "w", newline="")  # noqa: SIM115
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(TABLE_COLUMNS)
        self.metadata: dict = {"status": "running", **(metadata or {})}
        _write_json_atomic(self.tmp / META_NAME, self.metadata)
        self.pending: list[Instance] = []
        self.next_id = 1
        self.written_rows = 0
        self.max_pending = 0
        self.visible: dict[int, int] = {}  # id -> pixels it owns in the label image
        self.n_hidden = 0

    # --- instances -> table rows -----------------------------------------------------------
    def add(self, instances: list[Instance]) -> None:
        """Assign ids to final instances, write their table rows, hold them for painting."""
        px = self.pixel_size_um
        for inst in instances:
            if inst.area == 0:
                continue
            inst.id = self.next_id
            self.next_id += 1
            ys, xs = np.nonzero(inst.mask)
            cy = inst.offset[0] + float(ys.mean())
            cx = inst.offset[1] + float(xs.mean())
            name = self.class_names[inst.class_id] if 0 <= inst.class_id < len(self.class_names) else str(inst.class_id)  # fmt: skip
            x0, y0, x1, y1 = (round(float(v), 3) for v in inst.box)
            self._csv.writerow([
                inst.id, inst.class_id, name, round(float(inst.score), 6), x0, y0, x1, y1,
                round(cy, 3), round(cx, 3),
                round(cy * px, 4) if px else math.nan, round(cx * px, 4) if px else math.nan,
                inst.area, round(inst.area * px * px, 4) if px else math.nan,
            ])  # fmt: skip
            self.pending.append(inst)
        self._csv_file.flush()
        self.max_pending = max(self.max_pending, len(self.pending))

    @property
    def n_instances(self) -> int:
        """Instances in the table (after :meth:`finish`: those owning a pixel)."""
        return self.next_id - 1 - self.n_hidden

    def _settle_table(self) -> None:
        """Make the table agree with the painted labels: ``area_px`` / ``area_um2`` become the
        pixels each instance owns (the higher score wins an overlap) and an instance left with
        none (hidden under higher-scoring ones) is dropped. Called once, by :meth:`finish`."""
        src, tmp = self.tmp / TABLE_NAME, self.tmp / f".{TABLE_NAME}.settled"
        px = self.pixel_size_um
        a_px, a_um = TABLE_COLUMNS.index("area_px"), TABLE_COLUMNS.index("area_um2")
        with open(src, newline="") as fin, open(tmp, "w", newline="") as fout:
            rows, out = csv.reader(fin), csv.writer(fout)
            out.writerow(next(rows))
            for row in rows:
                area = self.visible.get(int(row[0]), 0)
                if area == 0:
                    self.n_hidden += 1
                    continue
                row[a_px] = str(area)
                row[a_um] = str(round(area * px * px, 4)) if px else "nan"
                out.writerow(row)
        os.replace(tmp, src)

    # --- painting ------------------------------------------------------------------------
    def advance(self, y_final: int) -> None:
        """Paint and write every whole chunk row above ``y_final`` (all rows when it is H)."""
        h, w = self.shape
        y_final = min(int(y_final), h)
        ch, cw = self.array.chunks
        while self.written_rows < h and (self.written_rows + ch <= y_final or y_final == h):
            y0, y1 = self.written_rows, min(self.written_rows + ch, h)
            live = [i for i in self.pending if i.offset[0] < y1 and i.y_end > y0]
            for x0 in range(0, w, cw):
                x1 = min(x0 + cw, w)
                here = [i for i in live if i.offset[1] < x1 and i.offset[1] + i.mask.shape[1] > x0]
                if not here:
                    continue
                block = paint_labels(
                    np.zeros((y1 - y0, x1 - x0), np.uint32), (y0, x0),
                    [i.mask for i in here], [i.offset for i in here],
                    [i.id for i in here], [i.score for i in here],
                )  # fmt: skip
                nz = block[block > 0]
                if nz.size:
                    self.array[y0:y1, x0:x1] = block
                    lo = int(nz.min())
                    counts = np.bincount(nz - lo)
                    for k in np.flatnonzero(counts).tolist():
                        self.visible[lo + k] = self.visible.get(lo + k, 0) + int(counts[k])
            self.written_rows = y1
            self.pending = [i for i in self.pending if i.y_end > y1]

    # --- metadata, pyramid, finish ---------------------------------------------------------
    def _pyramid(self) -> list[str]:
        """2x nearest-neighbour levels ``1, 2, ...`` of ``0``, one output chunk at a time."""
        paths = ["0"]
        src = self.array
        while max(src.shape) > self.chunk and min(src.shape) >= 2:
            shape = tuple(-(-int(s) // 2) for s in src.shape)
            dst = self.group.create_array(
                str(len(paths)), shape=shape, chunks=src.chunks, dtype="uint32", fill_value=0
            )
            ch, cw = dst.chunks
            for y in range(0, shape[0], ch):
                for x in range(0, shape[1], cw):
                    block = src[2 * y : 2 * (y + ch) : 2, 2 * x : 2 * (x + cw) : 2]
                    if block.any():
                        dst[y : y + block.shape[0], x : x + block.shape[1]] = block
            paths.append(str(len(paths)))
            src = dst
        return paths

    def _ngff_attrs(self, paths: list[str], name: str) -> dict:
        px = self.pixel_size_um
        unit = {"unit": "micrometer"} if px else {}
        axes = [{"name": "y", "type": "space", **unit}, {"name": "x", "type": "space", **unit}]
        base = px or 1.0
        ms = {
            "name": name,
            "axes": axes,
            "datasets": [
                {"path": p, "coordinateTransformations": [
                    {"type": "scale", "scale": [base * 2**i, base * 2**i]}]}
                for i, p in enumerate(paths)
            ],
        }  # fmt: skip
        label = {"source": {"image": "../../"}} if self.labels_group is not None else {}
        if self.zarr_format == 3:
            return {"ome": {"version": "0.5", "multiscales": [ms], "image-label": label}}
        return {"multiscales": [{"version": "0.4", **ms}],
                "image-label": {"version": "0.4", **label}}  # fmt: skip

    def finish(self, status: str, metadata: dict | None = None) -> Path:
        """Write the pyramid and metadata, move the result into place; return its path."""
        self.advance(self.shape[0])
        self._csv_file.close()
        self._settle_table()
        paths = self._pyramid()
        self.metadata.update(metadata or {})
        self.metadata.update(status=status, n_instances=self.n_instances,
                             n_hidden=self.n_hidden, levels=len(paths))  # fmt: skip
        attrs = self._ngff_attrs(paths, self.target.name)
        attrs["napari_hrs"] = {"kind": "detections", "table": TABLE_NAME, "run": META_NAME,
                               **json.loads(json.dumps(self.metadata, default=_json_default))}  # fmt: skip
        self.group.attrs.update(attrs)
        _write_json_atomic(self.tmp / META_NAME, self.metadata)
        if self.target.exists():  # overwrite: move the old one aside first, then delete it
            old = self.target.with_name(f".{self.target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(self.target, old)
            os.replace(self.tmp, self.target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.target)
        if self.labels_group is not None:
            self._register_label()
        return self.target

    def _register_label(self) -> None:
        import zarr

        group = zarr.open_group(str(self.labels_group), mode="a", zarr_format=self.zarr_format)
        attrs = group.attrs.asdict()
        ome = _ome(attrs)
        names = [n for n in ome.get("labels", []) if n != self.target.name] + [self.target.name]
        if self.zarr_format == 3:
            group.attrs.update({"ome": {**ome, "version": "0.5", "labels": names}})
        else:
            group.attrs.update({"labels": names})

    def abort(self) -> None:
        """Remove the partial store (after an error)."""
        if not self._csv_file.closed:
            self._csv_file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------ reading
@dataclass
class DetectionResult:
    """A detection result on disk, read lazily.

    Attributes
    ----------
    path : Path
        The result group (holds the labels, ``detections.csv`` and ``run.json``).
    labels : dask.array.Array
        Full-resolution uint32 labels ``(Y, X)``; 0 = background, ids match ``table["id"]``.
    table : pandas.DataFrame
        One row per instance (:data:`TABLE_COLUMNS`).
    metadata : dict
        ``status`` (``"complete"`` / ``"incomplete"``), ``tiles_done``, ``tiles_total``,
        provenance (model, config hash, thresholds, tile, overlap, version, timing).
    levels : list of dask.array.Array
        The label pyramid, full resolution first.
    """

    path: Path
    labels: Any
    table: Any
    metadata: dict
    levels: list = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.metadata.get("status", "unknown"))

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return (f"DetectionResult({str(self.path)!r}, {len(self.table)} instances, "
                f"labels {tuple(self.labels.shape)}, status={self.status!r})")  # fmt: skip


def find_result(path: str | Path) -> Path:
    """The result group for ``path``: a result itself, or an OME-Zarr image holding one under
    ``labels/`` (the one named ``detections`` when there are several)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"detection result {path}: no such file or directory")
    if (path / META_NAME).is_file():
        return path
    found = sorted(p.parent for p in path.glob(f"**/labels/*/{META_NAME}"))
    if len(found) == 1:
        return found[0]
    named = [p for p in found if p.name == "detections"]
    if len(named) == 1:
        return named[0]
    if not found:
        raise AcquisitionError(
            f"{path} holds no napari-hrs detection result (no {META_NAME}); pass a RESULT.zarr "
            "written by `napari-hrs detect` or IMAGE.ome.zarr/labels/<name>"
        )
    raise AcquisitionError(f"{path} holds several detection results {[str(p) for p in found]}; "
                           "pass one of them")  # fmt: skip


def read_detection_result(path: str | Path) -> DetectionResult:
    """Open a detection result (lazy labels, the table, the metadata).

    Parameters
    ----------
    path : str or Path
        ``RESULT.zarr``, ``IMAGE.ome.zarr/labels/<name>``, or the image itself.
    """
    import pandas as pd
    import zarr

    from napari_hrs.io.direct import lazy_from_zarr

    root = find_result(path)
    metadata = json.loads((root / META_NAME).read_text())
    group = zarr.open_group(str(root), mode="r")
    ms = _ome(group.attrs.asdict()).get("multiscales") or [{"datasets": [{"path": "0"}]}]
    levels = [lazy_from_zarr(group[d["path"]]) for d in ms[0]["datasets"]]
    table = pd.read_csv(root / TABLE_NAME, dtype={"class_name": str})
    return DetectionResult(path=root, labels=levels[0], table=table, metadata=metadata,
                           levels=levels)  # fmt: skip
