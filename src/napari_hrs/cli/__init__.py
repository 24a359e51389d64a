"""The ``napari-hrs`` command line.

Each subcommand lives in its own module of this package and exposes two functions:
``add_parser(subparsers)`` (register the subcommand and its arguments) and ``run(args) -> int``
(do the work, return the exit status). Heavy imports (torch, napari) happen inside ``run``
so ``napari-hrs --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand modules, in the order ``--help`` lists them
SUBCOMMANDS: tuple[str, ...] = ("synth", "detect", "train", "evaluate", "quantify", "batch", "demo")


class CLIError(Exception):
    """A user error: printed as one clear line, exit status 2, no traceback."""


def parse_channels(text: str | None) -> dict[str, int | str] | None:
    """``--channels`` of every subcommand: ``"brightfield=0,PRM1=2,PNA=AF488"`` ->
    ``{"brightfield": 0, "PRM1": 2, "PNA": "AF488"}`` (index or channel name per role)."""
    if not text:
        return None
    out: dict[str, int | str] = {}
    for item in text.split(","):
        role, sep, value = item.partition("=")
        if not sep or not role.strip() or not value.strip():
            raise CLIError(f"--channels: {item!r} is not ROLE=INDEX (e.g. brightfield=0,PRM1=2)")
        v, role = value.strip(), role.strip()
        if role in out:
            raise CLIError(f"--channels: role {role!r} is given twice ({text!r}); name each "
                           "role once (e.g. brightfield=0,PRM1=2)")  # fmt: skip
        out[role] = int(v) if v.lstrip("-").isdigit() else v
    return out


def add_plane_options(p: argparse.ArgumentParser) -> None:
    """``--scene``, ``--z``, ``--t``: which series and plane of a multi-scene file or a stack."""
    p.add_argument("--scene", default=None,
                   help="image series / scene of a multi-scene file: index or name (default 0)")  # fmt: skip
    p.add_argument("--z", type=int, default=None, help="Z plane of a stack (0-based)")
    p.add_argument("--t", type=int, default=None, help="time point of a time series (0-based)")


def add_engine_option(p: argparse.ArgumentParser) -> None:
    """``--engine``: our Cascade Mask R-CNN (native) or an installed detectron2, same weights."""
    p.add_argument("--engine", choices=("native", "detectron2"), default="native",
                   help="native (default) or detectron2 (runs the same weights through an "
                        "installed detectron2)")  # fmt: skip


def plane_options(args: argparse.Namespace) -> dict[str, int | str | None]:
    """The ``scene`` / ``t`` / ``z`` keywords of :func:`napari_hrs.io.open_acquisition`."""
    scene = getattr(args, "scene", None)
    if isinstance(scene, str) and scene.strip().isdigit():
        scene = int(scene)
    return {"scene": scene, "t": getattr(args, "t", None), "z": getattr(args, "z", None)}


def build_parser() -> argparse.ArgumentParser:
    from napari_hrs import __version__

    parser = argparse.ArgumentParser(
        prog="napari-hrs",
        description="Find human round spermatids in brightfield microscopy (Cascade Mask R-CNN) "
        "and check them against PRM1 / PNA fluorescence.",
    )
    parser.add_argument("--version", action="version", version=f"napari-hrs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"napari_hrs.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"napari_hrs.cli.{name}":
                continue  # subcommand not built yet
            raise
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CLIError as exc:
        print(f"napari-hrs {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-hrs {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
