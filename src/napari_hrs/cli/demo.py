"""``napari-hrs demo``: the sample acquisition in napari, with detection and markers.

Opens the bundled synthetic acquisition (:func:`napari_hrs.synth.sample.sample_path`), shows its
channels, and, with the bundled model, detects round spermatids and quantifies PRM1 / PNA per
cell. ``--screenshot PATH --exit`` saves what the viewer shows and quits (used under Xvfb);
``--headless`` skips the viewer and prints the summary only.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="open the sample acquisition in napari, detect hRS and quantify markers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--screenshot", type=Path, help="save a PNG of the viewer to this path")
    p.add_argument("--exit", action="store_true", help="quit after the screenshot")
    p.add_argument("--headless", action="store_true", help="no viewer: print the results only")
    p.add_argument(
        "--input", type=Path, default=None, help="an acquisition instead of the bundled sample"
    )
    p.add_argument(
        "--model", default="compact", help="'compact' (bundled, default) or a checkpoint path"
    )
    p.add_argument(
        "--score-threshold", type=float, default=0.5, help="detection score threshold (0..1)"
    )
    p.add_argument("--no-detect", action="store_true", help="show the acquisition only")
    return p


def run(args: argparse.Namespace) -> int:
    from napari_hrs._napari.demo import open_demo_viewer

    if args.headless:
        from napari_hrs.pipeline import run_pipeline_on_sample

        print(
            run_pipeline_on_sample(
                args.input, model=args.model, score_threshold=args.score_threshold
            ).summary_text()
        )
        return 0
    viewer = open_demo_viewer(
        args.input,
        model=args.model,
        detect=not args.no_detect,
        score_threshold=args.score_threshold,
    )
    if args.screenshot is not None:
        from napari_hrs._napari.demo import save_screenshot

        save_screenshot(viewer, args.screenshot)
        print(f"screenshot saved to {args.screenshot}")
    if args.exit:
        viewer.close()
        return 0
    import napari

    napari.run()
    return 0
