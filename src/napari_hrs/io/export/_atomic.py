"""Atomic writes and provenance, shared by every exporter."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrs.errors import Cancelled

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]
PathLike = str | os.PathLike


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def provenance(**sections: Any) -> dict[str, Any]:
    """Provenance for an export: plugin version, UTC time, and the given sections.

    Parameters
    ----------
    **sections
        E.g. ``detection=`` (a detection result's ``run.json``: model, config hash, score
        threshold, tile, overlap), ``markers=`` (the positivity thresholds), ``source=`` (the
        image path). None values are dropped; values are made JSON-safe.
    """
    from napari_hrs import __version__

    out = {
        "napari_hrs_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out.update({k: v for k, v in sections.items() if v is not None})
    return json.loads(json.dumps(out, default=_json_default))


def _check_target(path: PathLike, overwrite: bool) -> Path:
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True or choose another path")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermissionError(
            f"cannot create the folder {parent} for {path.name} ({exc.strerror or exc}); "
            "choose a save path in a writable folder"
        ) from exc
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"cannot write {path.name}: the folder {parent} is not writable; choose a save path "
            "in a writable folder"
        )
    return path


def check_replaceable(path: PathLike, overwrite: bool, ours: Callable[[Path], bool],
                      kind: str) -> None:  # fmt: skip
    """Refuse to replace ``path`` unless ``overwrite`` is set and ``ours(path)`` says it is
    ``kind`` (a previous output of ours): a user's own file or folder named as an output is
    never deleted. Raises :class:`FileExistsError`; nothing when ``path`` does not exist."""
    path = Path(path).expanduser()
    if not path.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) or choose "
                              "another path")  # fmt: skip
    if not ours(path):
        raise FileExistsError(f"{path} exists and is not {kind}; overwrite only replaces those: "
                              "remove it yourself or choose another path")  # fmt: skip


@contextmanager
def atomic_target(path: PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden sibling path to write to; move it to ``path`` when the block succeeds.

    On any error (or :class:`~napari_hrs.errors.Cancelled`) the partial file or directory is
    removed and an existing ``path`` is left untouched. With ``overwrite`` an existing file or
    directory is replaced (moved aside, replaced, then deleted).
    """
    target = _check_target(path, overwrite)
    tmp = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if target.exists() and (target.is_dir() or tmp.is_dir()):
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _write_json(path: Path, data: Mapping[str, Any], *, overwrite: bool = True) -> Path:
    with atomic_target(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default))
    return Path(path)


def _tick(progress: Progress | None, cancel: Cancel | None, done: int, total: int) -> None:
    if cancel is not None and cancel():
        raise Cancelled("export cancelled; nothing was written")
    if progress is not None:
        progress(done, total)
