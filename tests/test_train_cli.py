"""``napari-hrs train`` and ``napari-hrs evaluate`` through subprocess on a tiny dataset."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from _train_helpers import TINY_OVERRIDES, write_tiny_coco
from napari_hrs.cli.train import parse_overrides


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "napari_hrs.cli", *args], capture_output=True, text=True, timeout=300
    )


def _sets() -> list[str]:
    out = []
    for k, v in TINY_OVERRIDES.items():
        out += ["--set", f"{k}={v}"]
    return out


def test_train_then_evaluate(tmp_path):
    data = write_tiny_coco(tmp_path, n_images=2, size=64)
    model = tmp_path / "m.pt"
    common = ["--iters", "2", "--batch-size", "2", "--workers", "0", "--threads", "1"]
    r = _cli("train", str(data), "--out", str(model), "--classes", "round_spermatid",
             *common, "--checkpoint-every", "1", *_sets())  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert model.is_file() and (tmp_path / "m.losses.csv").is_file()
    assert "model saved to" in r.stdout

    # --resume with more iterations continues at iteration 2 (in-process: same code path)
    from napari_hrs.cli import main

    argv = ["train", str(data), "--out", str(model), "--resume", "--iters", "3", "--workers", "0"]
    assert main([*argv, "--threads", "1"]) == 0
    rows = (tmp_path / "m.losses.csv").read_text().strip().splitlines()
    assert [int(x.split(",")[0]) for x in rows[1:]] == [1, 2, 3]

    r = _cli("evaluate", str(model), str(data), "--out", str(tmp_path / "ev"), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "Average Precision" in r.stdout or "no detections" in r.stdout
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["target_class"] == "round_spermatid" and "lookalikes" in report
    assert (tmp_path / "ev" / "pr_curve.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "roi_heads.no_such_key=3"], "unknown model config key"),
        (["--set", "novalue"], "KEY=VALUE"),
        (["--classes", "unicorn"], "unicorn"),
    ],
)
def test_train_errors_are_one_line(tmp_path, capsys, args, message):
    from napari_hrs.cli import main

    data = write_tiny_coco(tmp_path, n_images=1, size=32)
    assert main(["train", str(data), "--out", str(tmp_path / "x.pt"), "--iters", "1", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_evaluate_missing_dataset(tmp_path, capsys):
    from napari_hrs.cli import main

    assert main(["evaluate", "compact", str(tmp_path / "nothing.json")]) == 2
    assert "nothing.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    "item, expected",
    [
        ("a.b=3", {"a.b": 3}),
        ("x=0.5", {"x": 0.5}),
        ("l=[1, 2]", {"l": [1, 2]}),
        ("t=true", {"t": True}),
        ("s=GN", {"s": "GN"}),
        ("n=none", {"n": None}),
    ],
)
def test_parse_overrides(item, expected):
    assert parse_overrides([item]) == expected


def test_image_root_finds_images_kept_elsewhere(tmp_path, capsys):
    """The not-found error said 'pass image_root=' with no CLI option to do it."""
    from napari_hrs.cli import main

    data = write_tiny_coco(tmp_path / "d", n_images=1, size=48)
    moved = tmp_path / "annotations" / "test.json"
    moved.parent.mkdir()
    data.rename(moved)  # the images stay in d/data/
    assert main(["evaluate", "compact", str(moved), "--device", "cpu"]) == 2
    assert "--image-root" in capsys.readouterr().err
    rc = main(["evaluate", "compact", str(moved), "--device", "cpu", "--image-root",
               str(tmp_path / "d" / "data")])  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0 and "AP" in out.out, out.err
