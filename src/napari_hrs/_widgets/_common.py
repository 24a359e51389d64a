"""What the dock widgets share: notifications, running a core function in a worker with a
progress bar and a Cancel button, and finding layers by role.

A job is a generator (:func:`steps`) that yields ``(done, total)`` while a core function runs
with ``progress`` / ``cancel`` callbacks, and returns its result (or a :class:`Failed`). The
widgets run it in napari's ``thread_worker`` (:class:`Job`); tests iterate the same generator
synchronously (:func:`run_sync`).
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magicgui.widgets import Container, Label, ProgressBar, PushButton

from napari_hrs.errors import Cancelled

Steps = Generator[tuple[int, int], None, Any]


# ---------------------------------------------------------------------------- notifications
def notify_error(error: BaseException | str) -> str:
    """Show ``error`` as a napari error notification (a message, never a traceback dialog)."""
    from napari.utils.notifications import show_error

    if isinstance(error, BaseException):
        text = str(error) or type(error).__name__
        if not isinstance(error, (ValueError, OSError, KeyError, Cancelled)):
            text = f"{type(error).__name__}: {text}"
    else:
        text = error
    show_error(text)
    return text


def notify(message: str, *, warning: bool = False) -> None:
    """Show an info (or warning) notification."""
    from napari.utils.notifications import show_info, show_warning

    (show_warning if warning else show_info)(message)


def avoid_triton_crash() -> None:
    """Keep triton from loading in a napari session that has not loaded it yet.

    torchvision imports torch._dynamo, which imports triton when it is installed (CUDA wheels
    of torch on Linux). Loading triton's LLVM after an OpenGL context exists on a Mesa LLVM
    driver (llvmpipe under Xvfb, radeonsi) crashes the process (segmentation fault; measured
    with napari 0.9, torch's triton 3.8, Mesa llvmpipe). napari-hrs never compiles kernels with
    triton, so it is marked unavailable (``import triton`` raises ImportError; torch then runs
    without it). A process that already loaded triton is left alone.
    """
    if "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]


# ---------------------------------------------------------------------------------- jobs
@dataclass
class Failed:
    """What a job returns when its core function raised."""

    error: BaseException


def steps(fn: Callable[..., Any], *args: Any, cancel: threading.Event, **kwargs: Any) -> Steps:
    """Run ``fn(*args, progress=..., cancel=..., **kwargs)`` on a helper thread; yield its
    ``(done, total)`` progress and return its result, or a :class:`Failed` when it raised.

    ``cancel`` is the event the core function's ``cancel()`` callback checks.
    """
    events: queue.Queue = queue.Queue()
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = fn(*args, progress=lambda d, t: events.put((int(d), int(t))),
                               cancel=cancel.is_set, **kwargs)  # fmt: skip
        except BaseException as exc:  # reported to the GUI thread, never raised there
            out["result"] = Failed(exc)
        finally:
            events.put(None)

    thread = threading.Thread(target=target, name="napari-hrs-job", daemon=True)
    thread.start()
    while (item := events.get()) is not None:
        yield item
    thread.join()
    return out["result"]


def run_sync(gen: Steps, on_progress: Callable[[tuple[int, int]], None] | None = None) -> Any:
    """Iterate a job generator in the calling thread; return its result."""
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(item)


class Job:
    """A progress bar, a status line and a Cancel button running one job at a time.

    Parameters
    ----------
    container : Container
        The widget the progress bar, status and Cancel button are appended to.
    """

    def __init__(self, container: Container) -> None:
        self.bar = ProgressBar(value=0, min=0, max=1, visible=False, label="progress")
        self.status = Label(value="")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.cancel_button.changed.connect(self.cancel)
        container.extend([self.bar, self.cancel_button, self.status])
        self.event = threading.Event()
        self.worker: Any = None

    @property
    def running(self) -> bool:
        return self.worker is not None

    def cancel(self) -> None:
        """Ask the running core function to stop (it checks at its next tile)."""
        if self.running:
            self.event.set()
            self.status.value = "cancelling..."

    def start(self, make: Callable[[threading.Event], Steps], on_done: Callable[[Any], None],
              what: str) -> Any:  # fmt: skip
        """Start ``make(cancel_event)`` in a napari thread worker; ``on_done(result)`` on success,
        an error notification on failure. Returns the worker (None when one is running)."""
        from napari.qt.threading import create_worker

        if self.running:
            notify_error(f"{what}: a job is already running; wait for it or press Cancel")
            return None
        self.event = threading.Event()
        gen = make(self.event)

        def work() -> Steps:
            try:
                return (yield from gen)
            except Exception as exc:  # shown as a notification by _done, not re-raised
                return Failed(exc)

        worker = create_worker(work, _ignore_errors=True)
        worker.yielded.connect(self._progress)
        worker.returned.connect(lambda result: self._done(result, on_done, what))
        worker.errored.connect(lambda exc: self._done(Failed(exc), on_done, what))
        worker.finished.connect(self._finished)
        self.worker = worker
        self.bar.value, self.bar.visible = 0, True
        self.cancel_button.enabled = True
        self.status.value = f"{what}..."
        worker.start()
        return worker

    def _progress(self, item: tuple[int, int]) -> None:
        done, total = item
        self.bar.max = max(int(total), 1)
        self.bar.value = min(int(done), self.bar.max)
        self.status.value = f"{done} / {total}"

    def _done(self, result: Any, on_done: Callable[[Any], None], what: str) -> None:
        if isinstance(result, Failed):
            if isinstance(result.error, Cancelled):
                self.status.value = f"{what}: cancelled"
                notify(f"{what}: cancelled", warning=True)
            else:
                self.status.value = f"{what}: failed"
                notify_error(result.error)
            return
        self.status.value = f"{what}: done"
        try:
            on_done(result)
        except Exception as exc:  # showing the result failed: say so, keep the GUI alive
            notify_error(exc)

    def _finished(self) -> None:
        self.worker = None
        self.bar.visible = False
        self.cancel_button.enabled = False


# -------------------------------------------------------------------------------- layers
def layer_role(layer: Any) -> str | None:
    """The channel role the reader stored (``metadata["role"]``), else one guessed from the name."""
    from napari_hrs.io import match_role

    role = (getattr(layer, "metadata", None) or {}).get("role")
    return role if role else match_role(str(layer.name))


def layers_of(viewer: Any, kind: type) -> list[Any]:
    """The viewer's layers of type ``kind``, bottom to top."""
    return [lay for lay in viewer.layers if isinstance(lay, kind)]


def find_layer(viewer: Any, kind: type, role: str | None = None) -> Any | None:
    """The first layer of ``kind`` with ``role`` (the selected one first), else None."""
    cands = layers_of(viewer, kind)
    if role is not None:
        cands = [lay for lay in cands if (layer_role(lay) or "").lower() == role.lower()]
    active = viewer.layers.selection.active
    if active in cands:
        return active
    return cands[0] if cands else None


def level0(layer: Any) -> Any:
    """A layer's full-resolution ``(Y, X)`` data (level 0 of a multiscale layer)."""
    return layer.data[0] if layer.multiscale else layer.data


def pixel_size_um(layer: Any) -> float | None:
    """The µm pixel size the reader stored in ``metadata``; None when unknown."""
    px = (getattr(layer, "metadata", None) or {}).get("pixel_size_um")
    return float(px) if px else None


def check_same_shape(layers: Sequence[Any]) -> tuple[int, int]:
    """The common ``(Y, X)`` shape of the layers' full-resolution data, or a ValueError naming
    each layer's shape."""
    shapes = {lay.name: tuple(int(s) for s in level0(lay).shape[-2:]) for lay in layers}
    if len(set(shapes.values())) > 1:
        found = ", ".join(f"{n!r} {s}" for n, s in shapes.items())
        raise ValueError(f"the layers have different shapes (Y, X): {found}; choose layers of "
                         "the same image (same size and pyramid level)")  # fmt: skip
    return next(iter(shapes.values()))


def layer_acquisition(layer: Any) -> Any:
    """An :class:`~napari_hrs.io.Acquisition` whose brightfield channel is ``layer``.

    When the reader made the layer (``metadata["acquisition_path"]``), the file is reopened
    lazily (its pyramid, pixel size and OME-Zarr location included); otherwise the layer's own
    data is wrapped (one channel).
    """
    import dask.array as da

    from napari_hrs.io import Acquisition

    meta = getattr(layer, "metadata", None) or {}
    path, index = meta.get("acquisition_path"), meta.get("channel_index")
    if path and index is not None and Path(path).exists():
        import warnings

        from napari_hrs.io import open_acquisition

        plane = meta.get("plane") or {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            acq = open_acquisition(path, channels={"brightfield": int(index)}, strict=False,
                                   t=plane.get("t"), z=plane.get("z"))  # fmt: skip
        if acq.roles.get("brightfield") == int(index):
            return acq
    data = layer.data if layer.multiscale else [layer.data]
    levels = [brightfield_plane(layer, da.asarray(d))[None] for d in data]
    name = f"{layer.name} (green)" if is_rgb(layer) else str(layer.name)
    return Acquisition(path=Path(str(layer.name)), levels=levels, channel_names=[name],
                       roles={"brightfield": 0}, pixel_size_um=pixel_size_um(layer))  # fmt: skip


def is_rgb(layer: Any) -> bool:
    """Whether ``layer`` is a colour (RGB / RGBA) image layer, e.g. a camera picture opened by
    napari's own reader."""
    return bool(getattr(layer, "rgb", False))


def brightfield_plane(layer: Any, data: Any) -> Any:
    """The ``(Y, X)`` brightfield plane of ``data`` (the layer's data or one of its levels):
    the data itself for a 2-D layer; the green channel of an RGB(A) ``(Y, X, 3|4)`` layer, as
    :func:`napari_hrs.io.roles.resolve_roles` picks it in a colour picture (it carries most of a
    brightfield camera's signal). Anything else raises a ValueError naming the layer."""
    if is_rgb(layer) and data.ndim == 3 and data.shape[-1] in (3, 4):
        return data[..., 1]
    if data.ndim != 2:
        raise ValueError(f"layer {layer.name!r} has shape {tuple(level0(layer).shape)}; choose a "
                         "single-channel 2-D brightfield image layer (Y, X) or a colour "
                         "picture (Y, X, RGB)")  # fmt: skip
    return data


def layer_choices(viewer: Any, kind: type) -> Callable[[Any], list[Any]]:
    """A magicgui ``choices`` callable listing the viewer's layers of ``kind``."""
    return lambda _widget=None: layers_of(viewer, kind)


def follow_layers(viewer: Any, container: Container) -> None:
    """Refresh the container's layer choices when layers are added, removed or renamed."""

    def reset(_event: Any = None) -> None:
        container.reset_choices()

    viewer.layers.events.inserted.connect(reset)
    viewer.layers.events.removed.connect(reset)
    viewer.layers.events.reordered.connect(reset)


def unwrap(viewer: Any) -> Any:
    """The viewer itself when napari passes a ``PublicOnlyProxy`` (widgets compare layers by
    identity, which a proxy would break)."""
    return getattr(viewer, "__wrapped__", viewer)
