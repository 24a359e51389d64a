"""Training: loss goes down, checkpoints resume exactly, cancel leaves a usable checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from _train_helpers import FAST_FIT, write_tiny_coco
from napari_hrs.errors import Cancelled, CheckpointError, DatasetError
from napari_hrs.train import InstanceDataset, fit
from napari_hrs.train.fit import lr_at, sibling
from napari_hrs.train.loader import IterationBatches, batch_indices
from napari_hrs.train.plots import read_loss_csv

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_coco(tmp_path_factory.mktemp("fit"), n_images=3, size=64)


def _weights(path):
    from napari_hrs.engine.checkpoint import load_checkpoint

    return load_checkpoint(path).model.state_dict()


def test_loss_decreases_and_files_are_written(tiny, tmp_path):
    out = fit(tiny, out=tmp_path / "m.pt", iters=12, augment=None, checkpoint_every=0, **FAST_FIT)
    cols = read_loss_csv(sibling(out, ".losses.csv"))
    assert cols["iteration"].tolist() == list(range(1, 13))
    assert {"loss_mask", "loss_rpn_cls", "total", "lr"} <= set(cols)
    assert cols["total"][-3:].mean() < 0.8 * cols["total"][:2].mean()
    assert sibling(out, ".losses.png").stat().st_size > 1000
    from napari_hrs.engine.checkpoint import load_checkpoint

    loaded = load_checkpoint(out)
    prov = loaded.meta["provenance"]
    assert prov["iteration"] == 12 and len(prov["data_hash"]) == 64
    assert prov["class_names"] == ["round_spermatid"] and prov["hparams"]["iters"] == 12
    assert "train_state" in loaded.meta["extra"]
    assert tuple(loaded.cfg.class_names) == ("round_spermatid",)


def test_resume_continues_exactly(tiny, tmp_path):
    """4 iterations in one go == 2 iterations, cancelled, then resumed to 4."""
    kw = dict(iters=4, checkpoint_every=2, **FAST_FIT)
    full = fit(tiny, out=tmp_path / "full.pt", **kw)
    calls = {"n": 0}

    def cancel_after_two() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(Cancelled, match="iteration 2"):
        fit(tiny, out=tmp_path / "part.pt", cancel=cancel_after_two, **kw)
    from napari_hrs.engine.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "part.pt").meta["provenance"]["iteration"] == 2
    part = fit(tiny, out=tmp_path / "part.pt", resume=True, num_workers=0, threads=1)
    a, b = _weights(full), _weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = read_loss_csv(sibling(part, ".losses.csv"))
    assert rows["iteration"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(rows["total"], read_loss_csv(sibling(full, ".losses.csv"))["total"])


def test_cancel_leaves_a_usable_checkpoint(tiny, tmp_path):
    from napari_hrs.engine.checkpoint import load_checkpoint
    from napari_hrs.engine.predictor import Predictor

    with pytest.raises(Cancelled):
        fit(tiny, out=tmp_path / "c.pt", iters=50, cancel=lambda: True, **FAST_FIT)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.meta["provenance"]["iteration"] == 0
    dets = Predictor(loaded, device="cpu", score_threshold=0.0).predict([np.zeros((64, 64))])
    assert dets[0].image_size == (64, 64)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_resume_errors(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fit(tiny, out=tmp_path / "none.pt", resume=True, **FAST_FIT)
    out = fit(tiny, out=tmp_path / "s.pt", iters=1, keep_train_state=False, **FAST_FIT)
    with pytest.raises(CheckpointError, match="no training state"):
        fit(tiny, out=out, resume=True, iters=2, num_workers=0)
    fit(tiny, out=tmp_path / "k.pt", iters=1, **FAST_FIT)
    other = write_tiny_coco(tmp_path / "other", n_images=2, size=64, seed=9)
    with pytest.raises(DatasetError, match="other data"):
        fit(other, out=tmp_path / "k.pt", resume=True, iters=2, num_workers=0)


def test_init_from_checkpoint_with_new_classes(tiny, tmp_path):
    src = fit(tiny, out=tmp_path / "src.pt", iters=1, **FAST_FIT)
    kw = {**FAST_FIT, "class_names": ["round_spermatid", "red_blood_cell"], "overrides": None}
    kw.update(lr=0.0, warmup=0)  # no update: copied tensors must stay as they were
    out = fit(tiny, out=tmp_path / "two.pt", init=src, iters=1, **kw)
    a, b = _weights(src), _weights(out)
    assert (
        b["backbone.bottom_up.stem.conv1.weight"].shape
        == a["backbone.bottom_up.stem.conv1.weight"].shape
    )
    same = [k for k in a if k in b and a[k].shape == b[k].shape]
    changed = [k for k in a if k in b and a[k].shape != b[k].shape]
    assert changed, "class-specific layers must change shape"
    # lr 0: copied tensors are unchanged (GroupNorm, no running statistics)
    assert all(torch.equal(a[k], b[k]) for k in same)
    from napari_hrs.engine.checkpoint import load_checkpoint

    assert load_checkpoint(out).cfg.class_names == ("round_spermatid", "red_blood_cell")


@pytest.mark.parametrize(
    "it, schedule, expected",
    [
        (0, "cosine", 0.1 * 0.001),
        (10, "cosine", 0.1 * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * 0.1)))),
        (100, "cosine", 0.1 * 0.01),
        (50, "constant", 0.1),
        (69, "steps", 0.1),
        (70, "steps", 0.01),
        (95, "steps", 0.001),
    ],
)
def test_lr_schedule(it, schedule, expected):
    assert lr_at(it, 0.1, 100, warmup=0 if it else 5, schedule=schedule) == pytest.approx(expected)


def test_lr_schedule_rejects_unknown():
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_at(0, 0.1, 10, schedule="linear")


def test_batches_cover_every_image_per_epoch_and_are_reproducible(tiny):
    seen = [i for it in range(3) for i in batch_indices(6, 2, seed=0, iteration=it)]
    assert sorted(seen) == list(range(6))
    ds = InstanceDataset.from_coco(tiny)
    b = IterationBatches(ds, ["round_spermatid"], 1, 2, seed=3, start=0, stop=5)
    (x1, t1), (x2, t2) = b[4], b[4]
    assert x1.shape == (2, 1, 64, 64) and torch.equal(x1, x2)
    assert all(torch.equal(a["masks"], c["masks"]) for a, c in zip(t1, t2, strict=True))
    for t in t1:
        assert t["boxes"].shape == (len(t["classes"]), 4) and (t["classes"] == 0).all()
    with pytest.raises(DatasetError, match="not categories"):
        IterationBatches(ds, ["sperm_whale"], 1, 2, 0, 0, 1)
