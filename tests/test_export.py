"""napari_hrs.io.export: labels (TIFF, zarr, NGFF inside an OME-Zarr), RLE / COCO, the picking
list, and atomicity (a failure or a cancel mid-write leaves nothing behind)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr
from pycocotools import mask as mask_utils

from _io_helpers import make_data, write_ngff
from napari_hrs.errors import Cancelled
from napari_hrs.io import export, open_acquisition, read_labels


def _labels(shape=(70, 90)) -> np.ndarray:
    lab = np.zeros(shape, np.uint32)
    lab[5:15, 10:22] = 3
    lab[30:50, 40:45] = 7
    lab[40, 41] = 0  # a hole
    lab[60:70, 80:90] = 9  # touches the bottom-right corner
    lab[0:3, 0:2] = 1  # touches the top-left corner
    lab[20:70, 60] = 12  # one full-height-ish column
    return lab


def _table(lab: np.ndarray) -> pd.DataFrame:
    ids = np.unique(lab)[1:]
    rows = []
    for i, lid in enumerate(ids):
        ys, xs = np.nonzero(lab == lid)
        rows.append({"id": int(lid), "class_id": i % 2, "class_name": ["hRS", "RBC"][i % 2],
                     "score": 0.5 + 0.1 * i, "centroid_y_px": ys.mean(),
                     "centroid_x_px": xs.mean(), "area_px": len(ys)})  # fmt: skip
    return pd.DataFrame(rows)


def _tree_digest(root: Path, skip: str = "labels") -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and skip not in p.relative_to(root).parts:
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


# ----------------------------------------------------------------------------- labels
@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("name, chunk", [("cells.tif", None), ("cells.zarr", 256)])
def test_labels_round_trip(tmp_path, name, chunk, lazy):
    lab = np.zeros((520, 600), np.uint32)  # big enough for a 2-level NGFF pyramid
    lab[:70, :90] = _labels()
    lab[300:340, 500:600] = 20
    data = da.from_array(lab, chunks=(128, 128)) if lazy else lab
    prov = export.provenance(model={"name": "compact"}, thresholds={"score": 0.5})
    kwargs = {} if chunk is None else {"chunk": chunk}
    seen = []
    out = export.save_labels(data, tmp_path / name, pixel_size_um=0.5, metadata=prov,
                             progress=lambda d, t: seen.append((d, t)), **kwargs)  # fmt: skip
    assert out == tmp_path / name and _leftovers(tmp_path) == []
    assert seen[-1][0] == seen[-1][1]  # progress reached its total
    if name.endswith(".tif"):
        with tifffile.TiffFile(out) as tif:
            np.testing.assert_array_equal(tif.asarray(), lab)
            desc = json.loads(tif.pages[0].description)
            assert tif.pages[0].tags["XResolution"].value == (20000, 1)  # px per cm at 0.5 µm
        assert desc["pixel_size_um"] == 0.5
    else:  # NGFF 0.4 label image (napari_hrs.io.ngff)
        group = zarr.open_group(str(out), mode="r")
        desc = group.attrs.asdict()
        ms = desc["multiscales"][0]
        assert "image-label" in desc
        assert [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]] == [
            [0.5, 0.5], [1.0, 1.0]]  # fmt: skip
        for i, d in enumerate(ms["datasets"]):
            np.testing.assert_array_equal(group[d["path"]][:], lab[:: 2**i, :: 2**i])
    assert desc["napari_hrs"]["model"] == {"name": "compact"}
    assert desc["napari_hrs"]["napari_hrs_version"]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ngff_labels_inside_image_leave_the_image_untouched(tmp_path, version):
    lab = _labels((64, 96))
    image = write_ngff(tmp_path / "img.ome.zarr", make_data((3, 64, 96)), version=version,
                       labels={"gt": (lab > 0).astype(np.uint8)})  # fmt: skip
    before = _tree_digest(image)
    meta = export.provenance(source="img")
    out = export.save_labels_ngff(lab, image, "detections", pixel_size_um=0.325, chunk=32,
                                  metadata=meta)  # fmt: skip
    assert out == image / "labels" / "detections"
    assert _tree_digest(image) == before  # the image arrays and metadata are unchanged
    found = read_labels(open_acquisition(image))
    assert sorted(found) == ["detections", "gt"]
    np.testing.assert_array_equal(found["detections"].levels[0].compute(), lab)
    assert found["detections"].metadata["source"] == {"image": "../../"}
    attrs = zarr.open_group(str(out), mode="r").attrs.asdict()
    assert attrs["napari_hrs"]["source"] == "img"
    assert zarr.open_group(str(out), mode="r").metadata.zarr_format == (
        3 if version == "0.5" else 2
    )
    with pytest.raises(FileExistsError, match="overwrite"):
        export.save_labels_ngff(lab, image, "detections")
    export.save_labels_ngff(lab * 0, image, "detections", overwrite=True)
    assert not read_labels(open_acquisition(image))["detections"].levels[0].compute().any()


def test_drop_labels_is_lazy():
    lab = da.from_array(_labels(), chunks=(32, 32))
    out = export.drop_labels(lab, [3, 9])
    assert isinstance(out, da.Array)
    expected = np.where(np.isin(_labels(), [3, 9]), 0, _labels())
    np.testing.assert_array_equal(out.compute(), expected)


# ------------------------------------------------------------------------------- COCO
@pytest.mark.parametrize(
    "rows, label",
    [(70, 1), (70, 3), (70, 7), (70, 9), (70, 12), (3, 1)],  # (3, 1): the mask spans every row
)
def test_rle_matches_pycocotools(rows, label):
    lab = _labels()[:rows]
    boxes = export.label_boxes(lab, tile=32)
    x0, y0, x1, y1 = boxes[label]
    full = np.asfortranarray(lab == label).astype(np.uint8)
    rle = export.rle_encode(lab[y0:y1, x0:x1] == label, (y0, x0), lab.shape)
    assert rle["counts"] == mask_utils.encode(full)["counts"].decode()
    assert rle["size"] == list(lab.shape)


def test_coco_reads_back_with_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    lab = _labels()
    table = _table(lab)
    out = export.save_coco(da.from_array(lab, chunks=32), tmp_path / "det.json", table,
                           image_name="slide.ome.zarr", metadata=export.provenance(source="x"))  # fmt: skip
    coco = COCO(str(out))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["hRS", "RBC"]
    assert coco.imgs[1] == {"id": 1, "file_name": "slide.ome.zarr", "width": 90, "height": 70}
    for _, row in table.iterrows():
        ann = coco.anns[int(row["id"])]
        np.testing.assert_array_equal(coco.annToMask(ann), lab == row["id"])
        assert ann["score"] == pytest.approx(row["score"])
        assert ann["category_id"] == row["class_id"] + 1
        assert ann["area"] == row["area_px"]
    assert coco.dataset["info"]["source"] == "x"


# ------------------------------------------------------------------------------ tables
def test_picking_list_ranks_hrs_in_um():
    lab = _labels()
    table = _table(lab)
    table["PRM1_positive"] = [True, False, True, False, True]
    table["category"] = ["PRM1+", "neither", "PRM1+", "neither", "PRM1+"]
    pick = export.picking_list(table, pixel_size_um=0.25)
    hrs = table[table["class_name"] == "hRS"].sort_values("score", ascending=False)
    assert list(pick["id"]) == list(hrs["id"]) and list(pick["rank"]) == [1, 2, 3]
    np.testing.assert_allclose(pick["x_um"], hrs["centroid_x_px"] * 0.25)
    np.testing.assert_allclose(pick["area_um2"], hrs["area_px"] * 0.0625)
    assert list(pick["PRM1_positive"]) == list(hrs["PRM1_positive"])
    assert len(export.picking_list(table, pixel_size_um=0.25, hrs_only=False)) == len(table)
    assert len(export.picking_list(table, pixel_size_um=0.25, min_score=0.85)) == 1
    with pytest.raises(ValueError, match="pixel size is unknown"):
        export.picking_list(table)


def test_table_csv_with_provenance(tmp_path):
    table = _table(_labels())
    out = export.save_table(table, tmp_path / "cells.csv", metadata=export.provenance(a=1))
    pd.testing.assert_frame_equal(pd.read_csv(out), table)
    assert json.loads((tmp_path / "cells.provenance.json").read_text())["a"] == 1


# -------------------------------------------------------------------------- atomicity
def _failing(lab: np.ndarray) -> da.Array:
    """Labels whose second row of blocks cannot be read."""

    def block(b, block_info=None):
        if block_info[0]["chunk-location"][0] >= 1:
            raise OSError("disk read error")
        return b

    return da.from_array(lab, chunks=(32, 32)).map_blocks(block, dtype=lab.dtype)


@pytest.mark.parametrize("name", ["cells.tif", "cells.zarr"])
def test_failure_mid_write_leaves_the_old_file(tmp_path, name):
    lab = _labels()
    target = export.save_labels(lab, tmp_path / name, chunk=32) if name.endswith("zarr") else \
        export.save_labels(lab, tmp_path / name)  # fmt: skip
    before = _tree_digest(tmp_path)
    with pytest.raises(OSError, match="disk read error"):
        export.save_labels(_failing(lab), target, overwrite=True)
    assert _tree_digest(tmp_path) == before and _leftovers(tmp_path) == []

    with pytest.raises(Cancelled):  # cancelled after the first block / band
        export.save_labels(lab, tmp_path / f"new{Path(name).suffix}", cancel=lambda: True)
    assert not (tmp_path / f"new{Path(name).suffix}").exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_failed_ngff_export_keeps_the_image(tmp_path, version):
    lab = _labels((64, 96))
    image = write_ngff(tmp_path / "img.ome.zarr", make_data((3, 64, 96)), version=version)
    before = _tree_digest(image, skip="(none)")
    with pytest.raises(OSError, match="disk read error"):
        export.save_labels_ngff(_failing(lab), image, "detections", chunk=32)
    assert _tree_digest(image, skip="(none)") == before
    assert not (image / "labels").exists() or _leftovers(image / "labels") == []


def test_unwritable_or_existing_targets(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(PermissionError, match="cannot create the folder"):
        export.save_table(_table(_labels()), tmp_path / "a_file" / "cells.csv")
    (tmp_path / "cells.csv").write_text("old")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.save_table(_table(_labels()), tmp_path / "cells.csv")
    assert (tmp_path / "cells.csv").read_text() == "old"
    with pytest.raises(ValueError, match="use a .zarr or .tif"):
        export.save_labels(_labels(), tmp_path / "cells.png")
    with pytest.raises(ValueError, match="integer image"):
        export.save_labels(np.zeros((4, 4), np.float32), tmp_path / "f.tif")
