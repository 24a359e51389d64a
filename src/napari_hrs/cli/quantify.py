"""``napari-hrs quantify``: PRM1 / PNA per cell, positivity calls and the summary.

Measures every labelled cell of LABELS in the marker channels of IMAGE (mean, median, integrated
intensity, local ring background, background-subtracted values), calls each cell PRM1+ / PNA+,
writes one CSV row per cell and prints the counts and the fraction of hRS that are PRM1+ and/or
PNA+.

examples:
  napari-hrs quantify slide.ome.zarr RESULT.zarr --out cells.csv
  napari-hrs quantify slide.ome.zarr slide.ome.zarr/labels/ground_truth --out gt.csv --method background_sd --k 3
  napari-hrs quantify slide.tif masks.tif --out cells.csv --channels brightfield=0,PRM1=1,PNA=2 --threshold-prm1 150 --threshold-pna 90
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from napari_hrs.cli import CLIError, add_plane_options, parse_channels, plane_options


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``quantify`` and its arguments."""
    p = subparsers.add_parser(
        "quantify",
        help="measure PRM1 / PNA per cell, call positivity, summarize",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", type=Path, help="the acquisition (OME-Zarr, zarr, OME-TIFF, TIFF)")
    p.add_argument(
        "labels",
        type=Path,
        help="cell labels: a detection RESULT.zarr, IMAGE.ome.zarr/labels/NAME, a zarr array or "
        "a TIFF, of the image's size",
    )
    p.add_argument("--out", "-o", type=Path, required=True, help="per-cell table (CSV) to write")
    p.add_argument(
        "--channels",
        default=None,
        help="channel roles, ROLE=INDEX or ROLE=NAME, e.g. PRM1=1,PNA=2,brightfield=0 "
        "(default: from the channel names)",
    )
    p.add_argument("--markers", default="PRM1,PNA", help="marker channels to measure (PRM1,PNA)")
    p.add_argument("--method", choices=("otsu", "background_sd", "manual"), default="otsu",
                   help="positivity threshold method (default otsu)")  # fmt: skip
    p.add_argument("--otsu-scale", choices=("log", "linear"), default="log",
                   help="where otsu finds its split: log scale (default) or linear")  # fmt: skip
    p.add_argument("--k", type=float, default=3.0, help="ring SDs for background_sd (3)")
    p.add_argument("--threshold-prm1", type=float, default=None,
                   help="manual PRM1 threshold (raw units of --measure); implies manual for PRM1")  # fmt: skip
    p.add_argument("--threshold-pna", type=float, default=None,
                   help="manual PNA threshold; implies manual for PNA")  # fmt: skip
    p.add_argument("--measure", default="mean_bgsub",
                   help="value thresholded by otsu / manual (mean_bgsub, mean, median, sbr...)")  # fmt: skip
    p.add_argument("--ring", default="2,6", help="background ring GAP,WIDTH in pixels (2,6)")
    p.add_argument("--tile", type=int, default=2048, help="tile edge in pixels (2048)")
    add_plane_options(p)
    p.add_argument("--level", type=int, default=0, help="pyramid level of the image (0)")
    p.add_argument("--detections", type=Path, default=None,
                   help="detection table (CSV with id, class_name, score; its x0, y0, x1, y1 "
                   "boxes, when present, spare the labels pass); default: the CSV found beside "
                   "LABELS")  # fmt: skip
    p.add_argument("--all-cells", action="store_true",
                   help="summarize every labelled cell, not only those detected as hRS")  # fmt: skip
    p.add_argument("--summary-json", type=Path, default=None, help="also write the summary here")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return p


def _parse_ring(text: str) -> tuple[int, int]:
    try:
        gap, width = (int(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"--ring: {text!r} is not GAP,WIDTH in pixels (e.g. 2,6)") from None
    if gap < 0 or width < 1:
        raise CLIError(f"--ring: needs GAP >= 0 and WIDTH >= 1 pixels, got {text!r}")
    return gap, width


def _write_csv(table: Any, path: Path) -> None:
    """Write atomically: a sibling temporary file, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        table.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- labels, detections
def _zarr_labels(node: Any, path: Path) -> tuple[Any, Path]:
    """The full-resolution label array of a zarr node and the group it comes from.

    ``node`` may be an array, an NGFF label image (multiscales), a ``labels`` group, or an image
    whose ``labels`` group holds exactly one label image.
    """
    import zarr

    if isinstance(node, zarr.Array):
        return node, path
    attrs = dict(node.attrs)
    attrs = attrs.get("ome", attrs)
    if "labels" in node and isinstance(node["labels"], zarr.Group):  # an image with labels
        return _zarr_labels(node["labels"], path / "labels")
    names = [str(n) for n in attrs.get("labels") or [] if str(n) in node]
    if len(names) == 1:
        return _zarr_labels(node[names[0]], path / names[0])
    if len(names) > 1:
        raise CLIError(
            f"{path} holds several label images {names}; pass one, e.g. {path / names[0]}"
        )
    if attrs.get("multiscales"):
        ds = attrs["multiscales"][0]["datasets"][0]["path"]
        return node[ds], path
    arrays = [k for k, v in node.members() if isinstance(v, zarr.Array)]
    if len(arrays) == 1:
        return node[arrays[0]], path
    raise CLIError(
        f"{path}: no labels image found (no NGFF 'multiscales' or 'labels' metadata, arrays "
        f"{arrays}); pass the labels array or group itself, e.g. IMAGE.ome.zarr/labels/NAME."
    )


def open_labels(path: Path) -> tuple[Any, Path]:
    """Open a labels image lazily (zarr / NGFF labels, TIFF or .npy).

    Returns the array (..., Y, X) and the path it was found at (the label group for NGFF), where
    a detection table is looked for.
    """
    import dask.array as da

    from napari_hrs.io.direct import lazy_from_zarr

    if not path.exists():
        raise CLIError(f"labels {path}: no such file or directory")
    if path.is_dir():
        import zarr

        try:
            node = zarr.open(str(path), mode="r")
        except Exception as exc:  # not a zarr store
            raise CLIError(f"labels {path}: not a zarr store ({exc})") from exc
        arr, where = _zarr_labels(node, path)
        return lazy_from_zarr(arr), where
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile
        import zarr

        try:
            store = tifffile.imread(path, aszarr=True, level=0)
            node = zarr.open(store, mode="r")
        except Exception as exc:  # noqa: BLE001 - empty, truncated, not a TIFF
            raise CLIError(f"labels {path}: not a readable TIFF ({exc})") from exc
        return lazy_from_zarr(node if isinstance(node, zarr.Array) else node["0"]), path
    if path.suffix.lower() == ".npy":
        import numpy as np

        try:
            return da.from_array(np.load(path, mmap_mode="r")), path
        except Exception as exc:  # noqa: BLE001 - empty, truncated, pickled objects
            raise CLIError(f"labels {path}: not a readable .npy array ({exc})") from exc
    raise CLIError(f"labels {path}: unsupported format; pass a zarr / NGFF labels folder or TIFF")


def _detection_table_beside(labels: Path) -> Path | None:
    """The detection table of a labels path: ``detections.csv`` inside a detection result
    (RESULT.zarr or IMAGE.ome.zarr/labels/NAME), else RESULT.csv beside RESULT.zarr."""
    base = labels.name
    for suffix in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    for cand in (
        labels / "detections.csv",
        labels.parent / f"{base}.csv",
        labels.parent / f"{base}_detections.csv",
    ):
        if cand.is_file():
            return cand
    return None


def read_detections(labels: Path, detections: Path | None) -> tuple[Any, Path | None]:
    """The detection table of ``labels`` (``detections``, else the one inside / beside the
    labels), read once, its id column named ``label_id``; ``(None, None)`` when there is none.
    A missing, unreadable or id-less ``detections`` is a :class:`CLIError`."""
    import pandas as pd

    path = detections if detections is not None else _detection_table_beside(labels)
    if path is None:
        return None, None
    if not path.is_file():
        raise CLIError(f"--detections {path}: no such file")
    try:
        det = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CLIError(f"detection table {path} is not a readable CSV ({exc})") from exc
    key = "id" if "id" in det.columns else "label_id" if "label_id" in det.columns else None
    if key is None:
        raise CLIError(
            f"detection table {path} has no 'id' (label id) column; columns: {list(det.columns)}"
        )
    return det.rename(columns={key: "label_id"}), path


def detection_boxes(det: Any) -> Any | None:
    """``label_id, x0, y0, x1, y1`` of a :func:`read_detections` table, for
    ``quantify(boxes=...)``; None when it has no usable boxes (they only spare the labels pass:
    nothing fails without them)."""
    import pandas as pd

    cols = ["label_id", "x0", "y0", "x1", "y1"]
    if det is None or not set(cols) <= set(det.columns):
        return None
    boxes = det[cols]
    ids_ok = (
        pd.api.types.is_integer_dtype(boxes["label_id"])
        and not boxes["label_id"].duplicated().any()
    )
    return boxes if ids_ok and not boxes[cols[1:]].isna().any().any() else None


def join_detections(table: Any, det: Any, path: Path | None) -> tuple[Any, str]:
    """Join the class / score columns of a :func:`read_detections` table (read from ``path``)
    on ``label_id``; ``table`` unchanged when there is none."""
    if det is None:
        return table, ""
    keep = [c for c in ("class_name", "class_id", "score") if c in det.columns]
    det = det[["label_id", *keep]].drop_duplicates("label_id")
    attrs = dict(table.attrs)
    merged = table.drop(columns=[c for c in keep if c in table.columns]).merge(
        det, on="label_id", how="left"
    )
    merged.attrs = attrs
    n = int(merged["label_id"].isin(det["label_id"]).sum())
    return merged, f"detections: {path} ({n} of {len(merged)} cells matched; columns {keep})"


def run(args: argparse.Namespace) -> int:
    """Quantify, call, write the table, print the summary."""
    from tqdm import tqdm

    from napari_hrs.errors import HRSError, PixelReadError
    from napari_hrs.io import open_acquisition
    from napari_hrs.markers import call_markers, format_summary, quantify_acquisition, summarize

    for opt, dest in (("--out", args.out), ("--summary-json", args.summary_json)):
        if dest is None:
            continue
        dest = Path(dest).expanduser().resolve()
        for src in (args.image, args.labels):
            src = Path(src).expanduser().resolve()
            if dest == src or dest in src.parents:
                raise CLIError(f"{opt} {dest} would replace the input {src}; choose another path")
        if dest.is_dir():
            raise CLIError(f"{opt} {dest} is a directory; pass a file path (e.g. cells.csv)")
    ring = _parse_ring(args.ring)
    markers = [m.strip() for m in args.markers.split(",") if m.strip()]
    manual = {"PRM1": args.threshold_prm1, "PNA": args.threshold_pna}
    manual = {m: v for m, v in manual.items() if v is not None}
    methods = {m: ("manual" if m in manual else args.method) for m in markers}
    lacking = [m for m, meth in methods.items() if meth == "manual" and m not in manual]
    if lacking:
        raise CLIError(
            f"--method manual needs a threshold for {lacking}: pass "
            + " ".join(f"--threshold-{m.lower()} VALUE" for m in lacking)
        )
    try:
        acq = open_acquisition(args.image, channels=parse_channels(args.channels), strict=False,
                               **plane_options(args))  # fmt: skip
        labels, labels_at = open_labels(args.labels)
        img_shape = tuple(acq.levels[args.level].shape[-2:]) if args.level < acq.n_levels else None
        if img_shape is None:
            raise CLIError(f"{args.image}: no level {args.level}; it has {acq.n_levels} level(s)")
        if tuple(labels.shape[-2:]) != img_shape:
            raise CLIError(
                f"labels {args.labels} have shape (Y, X) = {tuple(labels.shape[-2:])} but image "
                f"{args.image} (level {args.level}) has {img_shape}; pass labels made on this "
                "image (or the matching --level)."
            )
        det, det_path = read_detections(labels_at, args.detections)  # before the long part
        with tqdm(total=1, unit="tile", desc="quantify", disable=args.quiet) as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            # a detection result's boxes replace the labels pass (checked as the labels stream)
            table = quantify_acquisition(
                acq, labels, markers, level=args.level, ring_px=ring, tile=args.tile,
                progress=progress, boxes=detection_boxes(det),
            )  # fmt: skip
        table = call_markers(
            table, methods, markers=markers, k=args.k, thresholds=manual, measure=args.measure,
            otsu_scale=args.otsu_scale,
        )  # fmt: skip
        table, note = join_detections(table, det, det_path)
        summary = summarize(table, hrs_only=not args.all_cells)
    except PixelReadError as exc:  # truncated / corrupted pixels: name the file
        raise CLIError(f"{args.labels if exc.what == 'labels' else args.image}: {exc}") from exc
    except HRSError as exc:  # bad file, missing channel, shape mismatch, unknown --measure
        raise CLIError(str(exc)) from exc
    out = table.copy()
    out["category"] = out["category"].astype(str)
    uncalled = [m for m in ("PRM1", "PNA") if m not in markers]
    if uncalled:  # a marker not measured has no call, and the categories need both
        out = out.drop(columns=[*(f"{m}_positive" for m in uncalled), "category"])
    _write_csv(out, args.out)
    if note:
        print(note)
    print(format_summary(summary))
    print(f"{len(out)} cells written to {args.out}")
    if args.summary_json is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2, default=float))
    return 0
