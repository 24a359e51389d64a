"""Checkpoints: our format (round trip, errors) and detectron2 loading."""

from __future__ import annotations

import pickle

import pytest
import torch

from _engine_model_helpers import disc_batch, tiny_cfg
from napari_hrs.engine.checkpoint import (
    FORMAT,
    Loaded,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from napari_hrs.engine.detectron2_compat import convert_c2_names, load_detectron2_checkpoint
from napari_hrs.engine.model import build_model
from napari_hrs.errors import CheckpointError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    cfg = tiny_cfg(("hRS", "RBC"))
    model = build_model(cfg).eval()
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    save_checkpoint(path, model, cfg, provenance={"iteration": 3}, extra={"train_state": {"it": 3}})
    return path, model, cfg


def _same_outputs(a, b, images):
    oa = a.inference(images, score_thresh=0.0)
    ob = b.inference(images, score_thresh=0.0)
    return all(torch.equal(x[k], y[k]) for x, y in zip(oa, ob, strict=True) for k in x)


def test_round_trip(saved):
    path, model, cfg = saved
    loaded = load_checkpoint(path)
    assert isinstance(loaded, Loaded) and loaded.cfg == cfg and not loaded.model.training
    assert loaded.meta["provenance"]["iteration"] == 3 and "date" in loaded.meta["provenance"]
    assert loaded.meta["extra"]["train_state"]["it"] == 3
    assert _same_outputs(model, loaded.model, disc_batch(1)[0])
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["format_version"] == 1
    assert raw["class_names"] == ["hRS", "RBC"]
    assert not list(path.parent.glob("*.tmp"))
    assert load_model(path).cfg == cfg


def _rewrite(path, tmp_path, change):
    data = torch.load(path, weights_only=True)
    change(data)
    out = tmp_path / "bad.pt"
    torch.save(data, out)
    return out


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.update(format="other"), "not a napari-hrs checkpoint"),
        (lambda d: d.update(format_version=99), "format version"),
        (lambda d: d.update(class_names=["a"]), "disagree"),
        (
            lambda d: (d["config"].update(class_names=["a"]), d.update(class_names=["a"])),
            "do not fit",
        ),
        (lambda d: d["state_dict"].pop("roi_heads.mask_head.predictor.bias"), "missing"),
        (lambda d: d["state_dict"].update(extra_w=torch.zeros(1)), "unexpected"),
        (lambda d: d["config"]["roi_heads"].update(fc_dim=32), "shape mismatch"),
        (lambda d: d["config"].update(bogus=1), "invalid model config"),
    ],
)
def test_mismatched_checkpoints(saved, tmp_path, change, match):
    bad = _rewrite(saved[0], tmp_path, change)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(bad)
    assert "bad.pt" in str(info.value)


@pytest.mark.parametrize("kind", ["truncated", "garbage", "missing", "empty"])
def test_unreadable_files(saved, tmp_path, kind):
    bad = tmp_path / "x.pt"
    if kind == "truncated":
        bad.write_bytes(saved[0].read_bytes()[:5000])
    elif kind == "garbage":
        bad.write_bytes(b"not a torch file at all" * 10)
    elif kind == "empty":
        bad.write_bytes(b"")
    with pytest.raises(CheckpointError, match="x.pt"):
        load_model(bad)


def test_bundled_compact_missing_is_clear(monkeypatch, tmp_path):
    import napari_hrs.engine.checkpoint as ck

    monkeypatch.setattr(ck, "bundled_model_path", lambda: tmp_path / "compact.pt")
    with pytest.raises(CheckpointError, match="bundled compact model"):
        load_model("compact")


def _d2_state(model):
    """A detectron2-style state: numpy arrays under 'model', plus the buffers detectron2 adds."""
    state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    state["pixel_mean"] = torch.zeros(3, 1, 1).numpy()
    state["proposal_generator.anchor_generator.cell_anchors.0"] = torch.zeros(3, 4).numpy()
    return state


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_detectron2_round_trip(tmp_path, suffix):
    torch.manual_seed(1)
    cfg = tiny_cfg(("a", "b", "c")).override({"input_channels": 3, "pixel_mean": [100, 110, 120],
                                               "pixel_std": [1, 1, 1], "backbone.norm": "FrozenBN"})  # fmt: skip
    src = build_model(cfg).eval()
    path = tmp_path / f"model_final{suffix}"
    if suffix == ".pkl":
        with open(path, "wb") as fh:
            pickle.dump({"model": _d2_state(src), "__author__": "Detectron2 Model Zoo"}, fh)
    else:
        state = {"module." + k: v for k, v in src.state_dict().items()}
        torch.save({"model": state, "iteration": 5}, path)
    model = load_detectron2_checkpoint(path, cfg)
    images = torch.rand(1, 3, 64, 64) * 255
    assert _same_outputs(src, model, images)
    # load_model reads the number of classes off the file; compact-like arch via preset override
    with pytest.raises(CheckpointError, match="4 class names"):
        load_model(path, preset="paper", class_names=("a", "b", "c", "d"))


def test_detectron2_paper_load_model(tmp_path):
    from napari_hrs.engine.config import get_preset

    torch.manual_seed(2)
    src = build_model(get_preset("paper", class_names=("x", "y")))
    path = tmp_path / "cascade.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"model": _d2_state(src), "__author__": "test"}, fh)
    loaded = load_model(path)
    assert loaded.cfg.num_classes == 2 and loaded.cfg.input_format == "BGR"
    assert loaded.meta["format"] == "detectron2"
    sd = loaded.model.state_dict()
    assert torch.equal(
        sd["backbone.fpn_lateral2.weight"], src.state_dict()["backbone.fpn_lateral2.weight"]
    )
    state = _d2_state(src)
    state.pop("roi_heads.box_predictor.0.cls_score.weight")
    with pytest.raises(CheckpointError, match="missing"):
        load_detectron2_checkpoint({"model": state}, get_preset("paper", class_names=("x", "y")))


def test_c2_backbone_names():
    state = {"conv1_w": 1, "res_conv1_bn_s": 2, "res2_0_branch2a_w": 3, "res3_1_branch2c_bn_b": 4,
             "res2_0_branch1_bn_riv": 5, "fc1000_w": 6}  # fmt: skip
    assert convert_c2_names(state) == {
        "backbone.bottom_up.stem.conv1.weight": 1,
        "backbone.bottom_up.stem.conv1.norm.weight": 2,
        "backbone.bottom_up.res2.0.conv1.weight": 3,
        "backbone.bottom_up.res3.1.conv3.norm.bias": 4,
        "backbone.bottom_up.res2.0.shortcut.norm.running_var": 5,
    }


def test_saved_checkpoint_follows_the_umask_and_leaves_no_temporary(saved, tmp_path):
    """A lab shares models: the file gets the usual permissions (umask), not a temp file's 0600,
    and nothing but the checkpoint is left in the folder."""
    import os
    import stat

    from napari_hrs.engine.checkpoint import save_checkpoint

    _, model, cfg = saved
    old = os.umask(0o022)
    try:
        out = save_checkpoint(tmp_path / "shared" / "model.pt", model, cfg)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in out.parent.iterdir()] == ["model.pt"]
