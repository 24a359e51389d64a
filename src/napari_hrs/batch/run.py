"""Batch detection + marker quantification of many acquisitions on a dask.distributed cluster.

:func:`run_batch` plans every acquisition (tile grid, intensity range: small reads only), sends
groups of tiles as tasks to the cluster (:func:`napari_hrs.batch.tasks.predict_tiles`; workers
keep the model loaded), and, as the tiles of an acquisition come back, spools them to disk and
finally stitches them into the same NGFF labels + table result as
:func:`napari_hrs.engine.detect` (then PRM1 / PNA per cell, as
:func:`napari_hrs.pipeline.run_pipeline`). Output folder::

    OUT/<name>.zarr/                   result per acquisition (labels, detections.csv, run.json,
                                       cells.csv, summary.json), renamed into place when done
    OUT/summary.csv, OUT/summary.json  one row per acquisition: status, counts, marker statistics,
                                       failure reason
    OUT/manifest.json                  parameters and per-acquisition state (for --resume)
    OUT/.tiles/<name>/                 finished tiles of unfinished acquisitions

Resuming: finished acquisitions (complete result + manifest entry with the same parameters)
are skipped and finished tiles are read back from ``OUT/.tiles``, so a re-run after a crash or
Ctrl-C redoes only unfinished work. A tile lost with a killed worker is recomputed by dask
(the task has no side effects); results are keyed by tile, so nothing is lost or counted twice.
One unreadable file is reported in the summary and the rest finish.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from napari_hrs.batch.inputs import BatchInput, expand_inputs
from napari_hrs.batch.tasks import TileJob, predict_tiles
from napari_hrs.engine.tile_io import TILE_IO_VERSION, TileOutput
from napari_hrs.engine.tiling import Tile
from napari_hrs.errors import Cancelled, ClusterError
from napari_hrs.io.export._atomic import atomic_target

__all__ = ["BatchResult", "FileOutcome", "cluster_client", "run_batch"]

MANIFEST = "manifest.json"
SPOOL = ".tiles"
Progress = Callable[[int, int], None]


@dataclass
class FileOutcome:
    """What happened to one acquisition of a batch."""

    name: str
    path: str
    status: str = "pending"  # done | failed | skipped (done earlier) | pending (not finished)
    result: str = ""
    reason: str = ""
    tiles_total: int = 0
    tiles_computed: int = 0
    tiles_reused: int = 0
    n_detections: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    stamp: str = ""  # the input's size / modification time when it was read (see input_stamp)

    def row(self) -> dict[str, Any]:
        """One flat row of ``summary.csv``."""
        s = self.summary
        counts = s.get("counts", {}) or {}
        return {
            "name": self.name,
            "path": self.path,
            "status": self.status,
            # a result folder only where one was written (a failed file has none)
            "result": self.result if self.status in ("done", "skipped") else "",
            "n_detections": self.n_detections,
            "n_hRS": s.get("n_cells"),
            **{f"n_{k}": v for k, v in counts.items()},
            "fraction_marker_positive": s.get("fraction_marker_positive"),
            "fraction_PRM1_positive": s.get("fraction_PRM1_positive"),
            "fraction_PNA_positive": s.get("fraction_PNA_positive"),
            "tiles_total": self.tiles_total,
            "tiles_computed": self.tiles_computed,
            "tiles_reused": self.tiles_reused,
            "seconds": round(self.seconds, 2),
            "reason": self.reason,
        }


@dataclass
class BatchResult:
    """All outcomes of a :func:`run_batch` call, and where the summary went."""

    out: Path
    files: list[FileOutcome]
    cancelled: bool = False
    dashboard: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when every acquisition is done (now or in an earlier run)."""
        return not self.cancelled and all(f.status in ("done", "skipped") for f in self.files)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([f.row() for f in self.files])


# --- cluster ----------------------------------------------------------------------------
def _gpu_count() -> int:
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no torch CUDA: no GPU
        return 0


@contextmanager
def cluster_client(scheduler: str | None = None, local_workers: int | None = None,
                   gpus_per_worker: int | None = None,
                   connect_timeout_s: float = 30.0) -> Iterator[tuple[Any, str, int]]:  # fmt: skip
    """A ``dask.distributed.Client``: to ``scheduler`` (``tcp://host:port``) when given, else
    to a new ``LocalCluster`` sized to this machine (one worker per GPU when there are GPUs
    and ``gpus_per_worker`` is not 0; else ``local_workers`` or cores // 2 processes, the
    cores shared out as torch threads). Yields ``(client, device spec, torch threads)``.
    A scheduler that does not answer within ``connect_timeout_s`` seconds (or a malformed
    address) raises :class:`~napari_hrs.errors.ClusterError` naming it.
    The client never becomes the process's default dask scheduler: a failed connection would
    otherwise stay the default (status "connecting") and hang every later ``.compute()``."""
    from distributed import Client, LocalCluster

    cores = os.cpu_count() or 1
    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{connect_timeout_s}s", set_as_default=False)
        except (OSError, ValueError, TypeError) as exc:  # unreachable / malformed address
            raise ClusterError(
                f"cannot connect to the dask scheduler {scheduler!r}: {exc}. Check the address "
                "(tcp://host:port) and that the scheduler runs and is reachable from here, or "
                "leave out --scheduler to start a local cluster."
            ) from exc
        device = "cuda" if (gpus_per_worker or 0) > 0 else "auto"
        try:
            yield client, device, None
        finally:
            client.close()
        return
    n_gpu = _gpu_count() if gpus_per_worker != 0 else 0
    if n_gpu:
        n_workers = max(1, n_gpu // max(1, gpus_per_worker or 1))
        device = "local-gpu"
    else:
        n_workers = local_workers or max(1, cores // 2)
        device = "cpu"
    threads = max(1, cores // n_workers)
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0" if _has_bokeh() else None,
                           silence_logs=40)  # fmt: skip
    client = Client(cluster, set_as_default=False)
    try:
        yield client, device, threads
    finally:
        client.close()
        cluster.close()


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


# --- manifest and spool -----------------------------------------------------------------
def _write_json_atomic(path: Path, data: Any) -> None:
    with atomic_target(path, overwrite=True) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=_jsonable)


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
        return None if isinstance(v, float) and math.isnan(v) else v
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


class _Spool:
    """Finished tiles of one acquisition, one small pickle per tile (written atomically)."""

    def __init__(self, root: Path, name: str, params_key: str) -> None:
        self.dir = root / SPOOL / name
        self.key = params_key

    def _path(self, index: int) -> Path:
        return self.dir / f"{index:07d}.pkl"

    def reset_if_stale(self) -> None:
        stamp = self.dir / "params"
        if self.dir.exists() and (not stamp.exists() or stamp.read_text() != self.key):
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not stamp.exists():
            stamp.write_text(self.key)

    def done(self) -> set[int]:
        return {int(p.stem) for p in self.dir.glob("*.pkl")}

    def put(self, out: TileOutput) -> None:
        target = self._path(out.tile.index)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tile.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump((out.instances, out.not_owned, out.at_cap, out.blank), f,
                        protocol=pickle.HIGHEST_PROTOCOL)  # fmt: skip
        os.replace(tmp, target)

    def get(self, tile: Tile) -> TileOutput:
        with open(self._path(tile.index), "rb") as f:
            got = pickle.load(f)  # noqa: S301 - our own spool files
        return TileOutput(tile, *got)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# --- one acquisition --------------------------------------------------------------------
@dataclass
class _FileJob:
    item: BatchInput
    outcome: FileOutcome
    acq: Any = None
    plan: Any = None
    spool: _Spool | None = None
    pending: set[int] = field(default_factory=set)
    futures: list[Any] = field(default_factory=list)
    t0: float = 0.0


#: zarr metadata files whose change means a replaced or rewritten store
_ZARR_META = (".zattrs", ".zgroup", ".zarray", "zarr.json")


def input_stamp(path: str | os.PathLike) -> str:
    """A fingerprint of an input that changes when it is replaced or rewritten: size and
    modification time (ns) of a file; for a folder (zarr), its inode and modification time
    and those of its metadata files and of its first-level entries' metadata. Empty when the
    path cannot be read (then resume never trusts an earlier result)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return ""
    if not path.is_dir():
        return f"f{st.st_size}:{st.st_mtime_ns}"
    parts = [f"d{st.st_ino}:{st.st_mtime_ns}"]
    try:
        children = sorted(path.iterdir())
    except OSError:
        return ""
    for entry in [path, *(c for c in children if c.is_dir())]:
        for meta in _ZARR_META:
            try:
                m = (entry / meta).stat()
            except OSError:
                continue
            parts.append(f"{entry.name}/{meta}:{m.st_size}:{m.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _weights_stamp(model: str) -> str:
    """A fingerprint of the model file (sha256 of its bytes): a retrained model with the same
    config must not resume on tiles the previous weights predicted."""
    from napari_hrs.engine.checkpoint import bundled_model_path

    path = bundled_model_path() if model == "compact" else Path(model)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _params_key(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _result_complete(path: Path) -> bool:
    try:
        return json.loads((path / "run.json").read_text()).get("status") == "complete"
    except (OSError, ValueError):
        return False


def _local_dask(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with dask's threaded scheduler as the default: the client side of a batch
    (planning, stitching, quantifying) reads locally, whatever ``distributed.Client`` the
    process has made its default (a closed one would hang every compute); the tiles go to
    the cluster through explicit ``client.submit`` calls."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import dask

        with dask.config.set(scheduler="threads"):
            return fn(*args, **kwargs)

    return wrapper


@_local_dask
def run_batch(
    inputs: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] = "compact",
    scheduler: str | None = None,
    local_workers: int | None = None,
    gpus_per_worker: int | None = None,
    client: Any = None,
    device: str | None = None,
    tile: int = 1024,
    overlap: int | None = None,
    batch: int = 4,
    score_threshold: float = 0.5,
    max_detections: int | None = None,
    channels: dict[str, int | str] | None = None,
    pixel_size_um: float | None = None,
    plane: dict[str, int | str | None] | None = None,
    level: int = 0,
    resample: bool = True,
    merge_iou: float = 0.5,
    marker_method: str = "otsu",
    ring_px: tuple[int, int] = (2, 6),
    resume: bool = True,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    on_start: Callable[[Any], None] | None = None,
) -> BatchResult:
    """Detect cells and quantify PRM1 / PNA in many acquisitions, spread over a dask cluster.

    Parameters
    ----------
    inputs : list of paths or globs
        Acquisitions, glob patterns, folders of acquisitions, OME-Zarr HCS plates
        (:func:`~napari_hrs.batch.inputs.expand_inputs`).
    out : path
        Output folder (created); see the module docstring for its layout.
    model : str or path
        ``"compact"`` (bundled) or a checkpoint path; each worker loads it once.
    scheduler : str, optional
        Address of an existing dask scheduler (``tcp://host:port``); the workers must see the
        input and output paths. Default: a new ``LocalCluster``.
    local_workers, gpus_per_worker
        LocalCluster size (default: cores // 2 CPU workers, or one worker per GPU);
        ``gpus_per_worker=0`` forces the CPU.
    client : distributed.Client, optional
        Use this client (then ``scheduler`` / ``local_workers`` are ignored).
    device : str, optional
        Force a device on the workers (``"cpu"``, ``"cuda"``).
    tile, overlap, batch, score_threshold, max_detections, level, resample, merge_iou
        As :func:`napari_hrs.engine.detect` (tile / overlap in model pixels); one task predicts
        ``batch`` tiles.
    channels, pixel_size_um
        Channel roles and pixel size (µm) for :func:`napari_hrs.io.open_acquisition`.
    plane : dict, optional
        ``scene`` / ``t`` / ``z`` for :func:`napari_hrs.io.open_acquisition` (the same for every
        input), to pick a series or a plane of multi-scene files and stacks.
    marker_method, ring_px
        Marker calls, as :func:`napari_hrs.pipeline.run_pipeline`.
    resume : bool
        Skip acquisitions finished by an earlier run into ``out`` with the same parameters and
        reuse their finished tiles, unless the input file was replaced or rewritten since
        (:func:`input_stamp`: size and modification time). ``False`` recomputes everything
        (results are replaced).
    progress : callable, optional
        ``progress(tiles_done, tiles_total)`` over all acquisitions.
    cancel : callable, optional
        Return True to stop: running tasks are cancelled, finished tiles stay spooled, no
        unfinished result is written (``BatchResult.cancelled``).
    on_start : callable, optional
        Called with the client once the cluster is up (e.g. to print the dashboard link).
    """
    from napari_hrs.engine.detect import plan_detection
    from napari_hrs.engine.predictor import Predictor, config_hash

    t_start = time.perf_counter()
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    items = expand_inputs(list(inputs))
    if not items:
        raise FileNotFoundError(f"no acquisition in {[os.fspath(i) for i in inputs]}")
    model = os.fspath(model)
    if model != "compact" and not Path(model).exists():
        raise FileNotFoundError(f"model {model!r} does not exist; pass a checkpoint or 'compact'")
    # the client-side copy gives the plan (pixel size, object size) and the provenance
    local = Predictor(model, device="cpu", score_threshold=score_threshold,
                      max_detections=max_detections, batch_size=batch)  # fmt: skip
    plane = {k: v for k, v in (plane or {}).items() if v is not None} or None
    params = {"model": model, "config_hash": config_hash(local.cfg),
              "weights": _weights_stamp(model), "tile_io": TILE_IO_VERSION, "tile": tile,
              "overlap": overlap, "batch": batch, "score_threshold": score_threshold,
              "max_detections": max_detections, "channels": channels,
              "pixel_size_um": pixel_size_um, "plane": plane, "level": level, "resample": resample,
              "merge_iou": merge_iou, "marker_method": marker_method,
              "ring_px": list(ring_px)}  # fmt: skip
    key = _params_key(params)
    manifest_path = out / MANIFEST
    manifest: dict[str, Any] = {"params": params, "params_key": key, "files": {}}
    if resume and manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except ValueError:
            old = {}
        if old.get("params_key") == key:
            manifest["files"] = old.get("files", {})

    jobs: list[_FileJob] = []
    for item in items:
        outcome = FileOutcome(item.name, str(item.path), result=str(out / f"{item.name}.zarr"))
        jobs.append(_FileJob(item, outcome))
        prev = manifest["files"].get(item.name, {})
        outcome.stamp = input_stamp(item.path)
        if (resume and prev.get("status") == "done" and prev.get("path") == str(item.path)
                and outcome.stamp and prev.get("stamp") == outcome.stamp
                and _result_complete(Path(outcome.result))):  # fmt: skip
            outcome.status = "skipped"
            outcome.n_detections = int(prev.get("n_detections", 0))
            outcome.summary = prev.get("summary", {})
            outcome.tiles_total = int(prev.get("tiles_total", 0))
            continue
        _plan(jobs[-1], out, key, channels, pixel_size_um, plane, local, plan_detection,
              dict(tile=tile, overlap=overlap, level=level, resample=resample), resume)  # fmt: skip

    def save_manifest() -> None:
        for j in jobs:
            o = j.outcome
            manifest["files"][o.name] = {
                "path": o.path, "stamp": o.stamp,
                "status": "done" if o.status == "skipped" else o.status,
                "result": o.result, "reason": o.reason, "tiles_total": o.tiles_total,
                "n_detections": o.n_detections, "summary": o.summary,
                "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }  # fmt: skip
        _write_json_atomic(manifest_path, manifest)

    save_manifest()
    total = sum(j.outcome.tiles_total for j in jobs)
    done_tiles = sum(j.outcome.tiles_total for j in jobs if j.outcome.status == "skipped")
    done_tiles += sum(j.outcome.tiles_reused for j in jobs)
    if progress is not None:
        progress(done_tiles, total)
    result = BatchResult(out, [j.outcome for j in jobs])
    active = [j for j in jobs if j.outcome.status == "pending"]
    # acquisitions whose tiles are all spooled already: stitch them without a cluster
    for j in [j for j in active if not j.pending]:
        _finish(j, local, merge_iou, marker_method, ring_px)
        save_manifest()
    active = [j for j in active if j.outcome.status == "pending"]
    if active:
        with _client_for(client, scheduler, local_workers, gpus_per_worker) as (cl, dev, thr):
            result.dashboard = str(getattr(cl, "dashboard_link", "") or "") if _has_bokeh() else ""
            if on_start is not None:
                on_start(cl)
            result.cancelled = _drive(cl, active, device or dev, thr, model, score_threshold,
                                      max_detections, batch, channels, pixel_size_um, plane, local,
                                      merge_iou, marker_method, ring_px, save_manifest,
                                      progress, cancel, done_tiles, total)  # fmt: skip
    save_manifest()
    result.seconds = time.perf_counter() - t_start
    _write_summary(out, result)
    return result


@contextmanager
def _client_for(client, scheduler, local_workers, gpus_per_worker):  # noqa: ANN001, ANN202
    if client is not None:
        yield client, "cuda" if (gpus_per_worker or 0) > 0 else "auto", None
        return
    with cluster_client(scheduler, local_workers, gpus_per_worker) as got:
        yield got


def _plan(job: _FileJob, out: Path, key: str, channels, pixel_size_um, plane, predictor,  # noqa: ANN001
          plan_detection, plan_kwargs: dict, resume: bool) -> None:  # noqa: ANN001  # fmt: skip
    from napari_hrs.io import open_acquisition

    o = job.outcome
    job.t0 = time.perf_counter()
    try:
        job.acq = open_acquisition(job.item.path, channels=channels, strict=False,
                                   pixel_size_um=pixel_size_um, **(plane or {}))  # fmt: skip
        job.plan = plan_detection(job.acq, predictor, **plan_kwargs)
    except Exception as exc:  # noqa: BLE001 - reported per file, the batch goes on
        o.status, o.reason = "failed", _reason(exc)
        return
    o.tiles_total = len(job.plan.grid)
    rng = job.plan.intensity
    spool_key = f"{key}:{o.stamp}:{rng.low!r}:{rng.high!r}:{rng.padding!r}"
    job.spool = _Spool(out, o.name, spool_key)
    if not resume:
        job.spool.remove()
    job.spool.reset_if_stale()
    have = job.spool.done()
    job.pending = {t.index for t in job.plan.grid.tiles} - have
    o.tiles_reused = o.tiles_total - len(job.pending)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _drive(client, active: list[_FileJob], device, threads, model, score_threshold,  # noqa: ANN001, PLR0913
           max_detections, batch, channels, pixel_size_um, plane, predictor, merge_iou,
           marker_method,
           ring_px, save_manifest, progress, cancel, done_tiles, total) -> bool:  # noqa: ANN001  # fmt: skip
    """Submit the pending tiles, spool results as they come, finish acquisitions; True when
    cancelled."""
    from distributed import as_completed

    owner: dict[Any, _FileJob] = {}
    for j in active:
        tiles = [t for t in j.plan.grid.tiles if t.index in j.pending]
        # the same groups of tiles as single-process detection (batch-sized runs of the grid)
        groups: dict[int, list] = {}
        for t in tiles:
            groups.setdefault(t.index // batch, []).append(t)
        for g, group in sorted(groups.items()):
            tj = TileJob(path=str(j.item.path), channels=channels, level=j.plan.level,
                         shape=j.plan.shape, tiles=tuple(group), scale=j.plan.scale,
                         intensity=j.plan.intensity, model=model, device=device,
                         score_threshold=score_threshold, max_detections=max_detections,
                         batch=batch, threads=threads, pixel_size_um=pixel_size_um,
                         plane=plane, stamp=j.outcome.stamp)  # fmt: skip
            fut = client.submit(predict_tiles, tj, key=f"hrs-tiles-{j.outcome.name}-{g}-"
                                f"{os.getpid()}-{id(j)}", retries=2, pure=False)  # fmt: skip
            j.futures.append(fut)
            owner[fut] = j
    pending = as_completed(list(owner), loop=client.loop)
    try:
        for fut in pending:
            j = owner[fut]
            if cancel is not None and cancel():
                raise Cancelled("batch cancelled")
            if j.outcome.status != "pending":
                continue
            try:
                outputs = fut.result()
            except Exception as exc:  # noqa: BLE001 - the file fails, the batch goes on
                j.outcome.status, j.outcome.reason = "failed", _reason(exc)
                for f in j.futures:
                    f.cancel()
                save_manifest()
                continue
            # the result is on disk now: let the cluster forget it (worker memory stays flat)
            owner.pop(fut, None)
            j.futures.remove(fut)
            fut.release()
            for o in outputs:
                if o.tile.index in j.pending:
                    j.spool.put(o)
                    j.pending.discard(o.tile.index)
                    j.outcome.tiles_computed += 1
                    done_tiles += 1
            if progress is not None:
                progress(done_tiles, total)
            if not j.pending:
                _finish(j, predictor, merge_iou, marker_method, ring_px)
                save_manifest()
    except (Cancelled, KeyboardInterrupt):
        for f in list(owner):
            f.cancel()
        return True
    return False


def _finish(job: _FileJob, predictor, merge_iou: float, marker_method: str,  # noqa: ANN001
            ring_px: tuple[int, int]) -> None:  # fmt: skip
    """Stitch the spooled tiles into the result, quantify markers, mark the file done."""
    from napari_hrs.engine.detect import StitchedOutput
    from napari_hrs.engine.results import ResultWriter, read_detection_result
    from napari_hrs.pipeline import measure_cells, write_cell_tables

    o = job.outcome
    target = Path(o.result)
    try:
        meta = job.plan.metadata(job.acq, predictor, merge_iou=merge_iou)
        meta["model"]["device"] = "dask workers"
        meta["batch"] = {"tiles_computed": o.tiles_computed, "tiles_reused": o.tiles_reused}
        writer = ResultWriter(target, job.plan.shape, class_names=predictor.class_names,
                              pixel_size_um=job.plan.pixel_size_um, zarr_format=3,
                              overwrite=True, metadata=meta)  # fmt: skip
        output = StitchedOutput(job.plan.grid, writer, merge_iou=merge_iou)
        t0 = time.perf_counter()
        try:
            for t in job.plan.grid.tiles:
                output.add(job.spool.get(t))
            output.finish("complete", len(job.plan.grid), {}, t0)
        except BaseException:
            writer.abort()
            raise
        res = read_detection_result(target)
        cells, summary, _ = measure_cells(job.acq, res, marker_method=marker_method,
                                          ring_px=ring_px)  # fmt: skip
        write_cell_tables(target, cells, summary)
    except Exception as exc:  # noqa: BLE001 - reported per file
        o.status, o.reason = "failed", _reason(exc)
        o.reason += " | " + traceback.format_exc(limit=1).strip().splitlines()[-1][:200]
        return
    o.n_detections = int(summary.get("n_detections", len(cells)))
    o.summary = {k: v for k, v in summary.items() if k != "thresholds"}
    o.status = "done"
    o.seconds = time.perf_counter() - job.t0
    job.spool.remove()


def _write_summary(out: Path, result: BatchResult) -> None:
    table = result.table()
    with atomic_target(out / "summary.csv", overwrite=True) as tmp, \
            open(tmp, "w", newline="") as f:  # fmt: skip
        table.to_csv(f, index=False)
    _write_json_atomic(out / "summary.json", {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cancelled": result.cancelled,
        "seconds": round(result.seconds, 2),
        "dashboard": result.dashboard,
        "files": [{**f.row(), "summary": f.summary} for f in result.files],
    })  # fmt: skip
