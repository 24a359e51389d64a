"""Instance-segmentation datasets: COCO JSON files and napari-style label arrays.

One in-memory model, :class:`InstanceDataset`, holds images (as files or arrays) and their
annotations in COCO form (``segmentation`` as polygons or RLE, ``category_id``, ``attributes``).
It is built from a COCO instance JSON (:meth:`InstanceDataset.from_coco`, as annotation tools
export it) or from napari Labels (:meth:`InstanceDataset.from_labels`), and converted back with
:meth:`InstanceDataset.to_coco`. RLE encoding / decoding is pycocotools'.

Conventions: images are ``(C, Y, X)`` once loaded (a grayscale image has ``C = 1``), masks are
``(N, Y, X)`` bool, boxes ``(x0, y0, x1, y1)`` in pixels (half-open). Category ids are COCO's
(usually 1-based); the training code maps the chosen category *names* to 0-based model classes.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from napari_hrs.errors import DatasetError

__all__ = [
    "ImageRecord",
    "InstanceDataset",
    "Sample",
    "coco_to_labels",
    "decode_segmentation",
    "encode_mask",
    "labels_to_coco",
    "read_image",
    "to_channels",
]

_IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp"}


# --------------------------------------------------------------------------- masks <-> COCO
def encode_mask(mask: np.ndarray) -> dict:
    """Encode one ``(Y, X)`` boolean mask as compressed COCO RLE (``counts`` as str)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO ``segmentation`` (polygons, uncompressed or compressed RLE) to ``(Y, X)`` bool.

    Raises
    ------
    DatasetError
        If the segmentation is neither a polygon list nor an RLE dict.
    """
    if isinstance(segmentation, list):
        polys = [p for p in segmentation if len(p) >= 6]
        if not polys:
            return np.zeros((height, width), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        counts = segmentation["counts"]
        if isinstance(counts, list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = {"size": list(segmentation.get("size", [height, width])), "counts": counts}
            if isinstance(counts, str):
                rle["counts"] = counts.encode("ascii")
    else:
        raise DatasetError(
            f"unsupported COCO segmentation of type {type(segmentation).__name__}; "
            "expected a polygon list or an RLE dict with 'counts' and 'size'"
        )
    return mask_utils.decode(rle).astype(bool)


def mask_to_box(mask: np.ndarray) -> list[float]:
    """Half-open ``[x0, y0, x1, y1]`` pixel box of a ``(Y, X)`` mask (zeros if empty)."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)]


# --------------------------------------------------------------------------- images
def read_image(path: str | Path) -> np.ndarray:
    """Read a TIFF / PNG / JPEG image as ``(C, Y, X)`` (grayscale: ``C = 1``), dtype kept.

    Raises
    ------
    FileNotFoundError, DatasetError
        If the file is missing or its shape is not a 2-D grayscale / RGB(A) image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        arr = np.asarray(tifffile.imread(path))
    else:
        import imageio.v3 as iio

        arr = np.asarray(iio.imread(path))
    arr = np.squeeze(arr)
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # (Y, X, RGB[A])
        return np.moveaxis(arr[..., :3], -1, 0)
    if arr.ndim == 3 and arr.shape[0] in (3, 4):  # (RGB[A], Y, X)
        return arr[:3]
    raise DatasetError(
        f"{path}: image of shape {arr.shape} is not a 2-D grayscale or RGB image; "
        "export one brightfield plane per file"
    )


def to_channels(image: np.ndarray, in_channels: int) -> np.ndarray:
    """Adapt a ``(C, Y, X)`` image to a model with ``in_channels`` channels.

    RGB -> gray (ITU-R 601 luma) for 1-channel models; gray -> replicated for 3-channel models.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    c = image.shape[0]
    if c == in_channels:
        return image
    if in_channels == 1 and c == 3:
        w = np.array([0.299, 0.587, 0.114], np.float32)[:, None, None]
        return (image.astype(np.float32) * w).sum(axis=0, keepdims=True)
    if c == 1:
        return np.repeat(image, in_channels, axis=0)
    raise DatasetError(
        f"cannot feed a {c}-channel image to a model with {in_channels} input channels; "
        "pass grayscale or RGB images"
    )


# --------------------------------------------------------------------------- records
@dataclass
class ImageRecord:
    """One image and its annotations (COCO dicts, ``segmentation`` as polygons or RLE)."""

    image_id: int
    file_name: str
    height: int
    width: int
    annotations: list[dict] = field(default_factory=list)
    path: Path | None = None
    array: np.ndarray | None = None  # (C, Y, X), when the image is held in memory
    pixel_size_um: float | None = None

    def load(self) -> np.ndarray:
        """The image as ``(C, Y, X)`` in its stored dtype."""
        if self.array is not None:
            return self.array
        if self.path is None:
            raise DatasetError(f"image {self.image_id} ({self.file_name!r}) has no file or array")
        img = read_image(self.path)
        if img.shape[-2:] != (self.height, self.width):
            raise DatasetError(
                f"{self.path}: image is {img.shape[-2]}x{img.shape[-1]} (Y x X) but the COCO "
                f"entry says height={self.height}, width={self.width}"
            )
        return img


@dataclass
class Sample:
    """A loaded image with decoded instances.

    Attributes
    ----------
    image : (C, Y, X) array, raw intensities
    masks : (N, Y, X) bool
    category_ids : (N,) int64, COCO category ids
    category_names : list of N names
    attributes : list of N dicts (e.g. ``PRM1_positive``)
    image_id : int
    """

    image: np.ndarray
    masks: np.ndarray
    category_ids: np.ndarray
    category_names: list[str]
    attributes: list[dict]
    image_id: int


class InstanceDataset:
    """Images with instance annotations, in COCO form, loaded lazily.

    Parameters
    ----------
    categories : mapping of COCO category id -> name
    records : the images, in order
    source : where it came from (a path, for messages and provenance)
    """

    def __init__(
        self, categories: Mapping[int, str], records: Sequence[ImageRecord], source: str = ""
    ) -> None:
        self.categories = {int(k): str(v) for k, v in categories.items()}
        self.records = list(records)
        self.source = source

    # ---- construction
    @classmethod
    def from_coco(
        cls, coco: str | Path | Mapping, image_root: str | Path | None = None
    ) -> InstanceDataset:
        """Read a COCO instance JSON (a path or an already-loaded dict).

        Image files are looked up, by ``file_name``, under ``image_root``, then under the
        folder named like the JSON without suffix (``train.json`` -> ``train/``), then beside
        the JSON.
        """
        source = ""
        roots: list[Path] = []
        if image_root is not None:
            roots.append(Path(image_root))
        if isinstance(coco, (str, Path)):
            path = Path(coco)
            if not path.is_file():
                raise FileNotFoundError(f"COCO annotation file not found: {path}")
            try:
                coco = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}: not valid JSON ({exc})") from exc
            source = str(path)
            roots += [path.parent / path.stem, path.parent]
        if not isinstance(coco, Mapping) or "images" not in coco or "categories" not in coco:
            raise DatasetError(
                f"{source or 'COCO dict'}: needs 'images', 'annotations' and 'categories' keys"
            )
        categories = {int(c["id"]): str(c["name"]) for c in coco["categories"]}
        by_image: dict[int, list[dict]] = {}
        for ann in coco.get("annotations", []):
            if int(ann["category_id"]) not in categories:
                raise DatasetError(
                    f"{source or 'COCO dict'}: annotation {ann.get('id')} has category_id "
                    f"{ann['category_id']}, not one of {sorted(categories)}"
                )
            by_image.setdefault(int(ann["image_id"]), []).append(ann)
        records = []
        for im in coco["images"]:
            iid = int(im["id"])
            path = None
            for root in roots:
                if (root / im["file_name"]).is_file():
                    path = root / im["file_name"]
                    break
            if path is None and roots:
                raise FileNotFoundError(
                    f"{source}: image {im['file_name']!r} (id {iid}) not found under "
                    + ", ".join(str(r) for r in roots)
                    + "; pass image_root= (--image-root on the command line)"
                )
            records.append(
                ImageRecord(
                    image_id=iid,
                    file_name=str(im["file_name"]),
                    height=int(im["height"]),
                    width=int(im["width"]),
                    annotations=by_image.get(iid, []),
                    path=path,
                    pixel_size_um=im.get("pixel_size_um"),
                )
            )
        return cls(categories, records, source=source)

    @classmethod
    def from_labels(
        cls,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        classes: Sequence[Mapping[int, str | int] | np.ndarray],
        class_names: Sequence[str],
    ) -> InstanceDataset:
        """Build a dataset from napari-style arrays (see :func:`labels_to_coco`)."""
        coco = labels_to_coco(images, labels, classes, class_names)
        ds = cls.from_coco(coco)
        for rec, img in zip(ds.records, images, strict=True):
            img = np.asarray(img)
            rec.array = img[None] if img.ndim == 2 else img
        ds.source = "arrays"
        return ds

    # ---- access
    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        rec = self.records[index]
        image = rec.load()
        anns = [a for a in rec.annotations if not a.get("iscrowd", 0)]
        if anns:
            masks = np.stack(
                [decode_segmentation(a["segmentation"], rec.height, rec.width) for a in anns]
            )
        else:
            masks = np.zeros((0, rec.height, rec.width), bool)
        cat_ids = np.array([int(a["category_id"]) for a in anns], np.int64)
        return Sample(
            image=image,
            masks=masks,
            category_ids=cat_ids,
            category_names=[self.categories[int(c)] for c in cat_ids],
            attributes=[dict(a.get("attributes", {})) for a in anns],
            image_id=rec.image_id,
        )

    @property
    def category_names(self) -> list[str]:
        """Category names in id order."""
        return [self.categories[k] for k in sorted(self.categories)]

    def subset(self, indices: Sequence[int]) -> InstanceDataset:
        """A dataset with the images at ``indices`` (records shared, not copied)."""
        return InstanceDataset(self.categories, [self.records[i] for i in indices], self.source)

    def counts(self) -> dict[str, int]:
        """Number of (non-crowd) instances per category name."""
        out = dict.fromkeys(self.category_names, 0)
        for rec in self.records:
            for a in rec.annotations:
                if not a.get("iscrowd", 0):
                    out[self.categories[int(a["category_id"])]] += 1
        return out

    def to_coco(self) -> dict:
        """The dataset as a COCO dict (annotations completed with ``id``, ``area``, ``bbox``)."""
        images, annotations = [], []
        next_id = 1 + max(
            (int(a.get("id", 0)) for r in self.records for a in r.annotations), default=0
        )
        for rec in self.records:
            entry = {
                "id": rec.image_id,
                "file_name": rec.file_name,
                "height": rec.height,
                "width": rec.width,
            }
            if rec.pixel_size_um is not None:
                entry["pixel_size_um"] = rec.pixel_size_um
            images.append(entry)
            for a in rec.annotations:
                a = copy.deepcopy(a)
                if "id" not in a:
                    a["id"], next_id = next_id, next_id + 1
                if "area" not in a or "bbox" not in a:
                    m = decode_segmentation(a["segmentation"], rec.height, rec.width)
                    x0, y0, x1, y1 = mask_to_box(m)
                    a.setdefault("area", float(m.sum()))
                    a.setdefault("bbox", [x0, y0, x1 - x0, y1 - y0])
                a.setdefault("iscrowd", 0)
                annotations.append(a)
        categories = [{"id": k, "name": v} for k, v in sorted(self.categories.items())]
        return {"images": images, "annotations": annotations, "categories": categories}

    def fingerprint(self) -> str:
        """SHA-256 of the annotations and the image bytes (for checkpoint provenance)."""
        h = hashlib.sha256()
        h.update(json.dumps(self.to_coco(), sort_keys=True, default=str).encode())
        for rec in self.records:
            if rec.array is not None:
                h.update(np.ascontiguousarray(rec.array).tobytes())
            elif rec.path is not None:
                h.update(rec.path.read_bytes())
        return h.hexdigest()


# --------------------------------------------------------------------------- napari <-> COCO
def _class_of(label_id: int, table: Mapping | np.ndarray, lab: np.ndarray, names: Sequence[str]):
    """Class name of instance ``label_id`` from a dict table or a class-labels array."""
    if isinstance(table, np.ndarray):
        vals = table[lab == label_id]
        vals = vals[vals > 0]
        if vals.size == 0:
            raise DatasetError(f"instance {label_id} has no class in the class-labels array")
        value = int(np.bincount(vals.astype(np.int64)).argmax())
        if value > len(names):
            raise DatasetError(
                f"class-labels value {value} for instance {label_id} exceeds the "
                f"{len(names)} class names {list(names)} (values are 1-based)"
            )
        return names[value - 1]
    if label_id not in table:
        raise DatasetError(f"instance {label_id} has no entry in the class table; add it")
    value = table[label_id]
    if isinstance(value, (int, np.integer)):
        return names[int(value)]  # 0-based index into class_names
    if str(value) not in names:
        raise DatasetError(f"class {value!r} of instance {label_id} is not one of {list(names)}")
    return str(value)


def labels_to_coco(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    classes: Sequence[Mapping[int, str | int] | np.ndarray],
    class_names: Sequence[str],
    file_names: Sequence[str] | None = None,
) -> dict:
    """Convert napari-style instance labels to a COCO instance dict (RLE segmentations).

    Parameters
    ----------
    images : images ``(Y, X)`` or ``(C, Y, X)``; only their size is used
    labels : instance label arrays ``(Y, X)``, 0 = background, one id per cell
    classes : per image, a dict ``label_id -> class name`` (or 0-based index into
        ``class_names``), or a class-labels array ``(Y, X)`` whose value is the 1-based index
        into ``class_names``
    class_names : the categories, in order; they get COCO ids 1..K
    file_names : names to record for the images (default ``image_0000.tif`` ...)
    """
    if not (len(images) == len(labels) == len(classes)):
        raise DatasetError(
            f"got {len(images)} images, {len(labels)} label arrays and {len(classes)} class "
            "tables; pass one of each per image"
        )
    names = [str(n) for n in class_names]
    cat_id = {n: i + 1 for i, n in enumerate(names)}
    out_images, annotations = [], []
    for i, (img, lab, table) in enumerate(zip(images, labels, classes, strict=True)):
        lab = np.asarray(lab)
        if lab.shape != np.shape(img)[-2:]:
            raise DatasetError(
                f"image {i}: labels of shape {lab.shape} do not match the image's (Y, X) "
                f"{np.shape(img)[-2:]}"
            )
        h, w = lab.shape
        name = file_names[i] if file_names is not None else f"image_{i:04d}.tif"
        out_images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        for lid in np.unique(lab):
            if lid == 0:
                continue
            m = lab == lid
            x0, y0, x1, y1 = mask_to_box(m)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cat_id[_class_of(int(lid), table, lab, names)],
                    "segmentation": encode_mask(m),
                    "area": float(m.sum()),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "iscrowd": 0,
                    "attributes": {"label_id": int(lid)},
                }
            )
    categories = [{"id": cat_id[n], "name": n} for n in names]
    return {"images": out_images, "annotations": annotations, "categories": categories}


def coco_to_labels(
    coco: Mapping | str | Path | InstanceDataset, image_id: int
) -> tuple[np.ndarray, dict[int, str]]:
    """Paint the instances of one COCO image into a napari Labels array.

    Larger instances are painted first so that small cells lying on big ones stay visible.

    Returns
    -------
    labels : (Y, X) int32, 0 = background, instances 1..N in annotation order
    classes : dict label id -> category name
    """
    ds = coco if isinstance(coco, InstanceDataset) else InstanceDataset.from_coco(coco)
    recs = [r for r in ds.records if r.image_id == int(image_id)]
    if not recs:
        raise DatasetError(
            f"image id {image_id} is not in the dataset; ids are "
            f"{[r.image_id for r in ds.records][:20]}"
        )
    rec = recs[0]
    labels = np.zeros((rec.height, rec.width), np.int32)
    masks = [decode_segmentation(a["segmentation"], rec.height, rec.width) for a in rec.annotations]
    classes = {}
    for k in sorted(range(len(masks)), key=lambda k: -int(masks[k].sum())):
        labels[masks[k]] = k + 1
    for k, a in enumerate(rec.annotations):
        classes[k + 1] = ds.categories[int(a["category_id"])]
    return labels, classes


def find_images(folder: str | Path) -> list[Path]:
    """Image files (tif, png, jpg) in a folder, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)


# --------------------------------------------------------------------------- split and save
def split_dataset(
    dataset: InstanceDataset,
    val_fraction: float = 0.2,
    *,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> tuple[InstanceDataset, InstanceDataset]:
    """Split by image into (train, val), seeded.

    With ``class_names``, the split is stratified: each image is assigned to the stratum of its
    most frequent class among ``class_names`` (images without any form their own stratum), and
    every stratum contributes ``round(val_fraction * n)`` images to val (at least one when the
    stratum has two or more images).
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if len(dataset) < 2:
        raise DatasetError(f"cannot split a dataset of {len(dataset)} image(s); need at least 2")
    rng = np.random.default_rng(seed)
    strata: dict[str, list[int]] = {}
    wanted = set(class_names) if class_names is not None else None
    for i, rec in enumerate(dataset.records):
        key = ""
        if wanted is not None:
            names = [dataset.categories[int(a["category_id"])] for a in rec.annotations]
            names = [n for n in names if n in wanted]
            if names:
                values, counts = np.unique(names, return_counts=True)
                key = str(values[np.argmax(counts)])
        strata.setdefault(key, []).append(i)
    val: list[int] = []
    for key in sorted(strata):
        idx = np.array(strata[key])
        rng.shuffle(idx)
        n_val = int(round(val_fraction * len(idx)))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val += idx[:n_val].tolist()
    val_set = set(val)
    if not val_set:  # only singleton strata: take one image
        val_set = {int(rng.integers(len(dataset)))}
    train = [i for i in range(len(dataset)) if i not in val_set]
    return dataset.subset(train), dataset.subset(sorted(val_set))


def write_coco(dataset: InstanceDataset, out_json: str | Path) -> Path:
    """Write ``dataset`` as ``out_json`` plus its images as TIFF files in ``<out_json stem>/``.

    In-memory images are saved as ``(Y, X)`` (grayscale) or ``(Y, X, 3)`` TIFFs; file images
    are copied. The JSON is written atomically.
    """
    import shutil

    import tifffile

    out_json = Path(out_json)
    img_dir = out_json.parent / out_json.stem
    img_dir.mkdir(parents=True, exist_ok=True)
    coco = dataset.to_coco()
    for rec, entry in zip(dataset.records, coco["images"], strict=True):
        name = Path(rec.file_name).with_suffix(".tif").name if rec.array is not None else None
        if rec.array is not None:
            arr = rec.array[0] if rec.array.shape[0] == 1 else np.moveaxis(rec.array, 0, -1)
            tifffile.imwrite(img_dir / name, arr)
            entry["file_name"] = name
        elif rec.path is not None:
            dest = img_dir / rec.file_name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.resolve() != rec.path.resolve():
                shutil.copyfile(rec.path, dest)
    tmp = out_json.with_name(out_json.name + ".tmp")
    tmp.write_text(json.dumps(coco))
    tmp.replace(out_json)
    return out_json
