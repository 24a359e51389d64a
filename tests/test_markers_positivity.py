"""Positivity thresholds and categories on constructed distributions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _markers_helpers import marker_scene
from napari_hrs.errors import ChannelRoleError
from napari_hrs.markers import CATEGORIES, CATEGORY_COLORS, call_markers, call_positive, quantify


def _table(prm1, pna=None, sd=2.0):
    prm1 = np.asarray(prm1, float)
    pna = np.zeros_like(prm1) if pna is None else np.asarray(pna, float)
    return pd.DataFrame(
        {
            "label_id": np.arange(1, len(prm1) + 1),
            "PRM1_mean": 100 + prm1,
            "PRM1_background": 100.0,
            "PRM1_background_sd": sd,
            "PRM1_mean_bgsub": prm1,
            "PNA_mean": 50 + pna,
            "PNA_background": 50.0,
            "PNA_background_sd": sd,
            "PNA_mean_bgsub": pna,
        }
    )


def test_otsu_splits_a_bimodal_distribution():
    rng = np.random.default_rng(0)
    neg, pos = rng.normal(0, 3, 60), rng.normal(50, 5, 40)
    t = _table(np.r_[neg, pos])
    positive, thr = call_positive(t, "PRM1", "otsu", otsu_scale="linear")
    assert 10 < thr < 40
    assert positive.name == "PRM1_positive" and positive.dtype == bool
    np.testing.assert_array_equal(positive.to_numpy(), np.r_[np.zeros(60, bool), np.ones(40, bool)])


def test_otsu_on_the_log_scale_splits_skewed_positives():
    """Tight negatives near zero, positives spread over a decade (log-normal), mostly positive:
    the linear split cuts through the positives, the log split (default) does not."""
    rng = np.random.default_rng(1)
    neg = rng.normal(0, 4, 30)
    pos = np.exp(rng.normal(np.log(120), 0.6, 170))
    t = _table(np.r_[neg, pos])
    truth = np.r_[np.zeros(30, bool), np.ones(170, bool)]
    log_calls, thr = call_positive(t, "PRM1", "otsu")
    lin_calls, lin_thr = call_positive(t, "PRM1", "otsu", otsu_scale="linear")
    assert (log_calls.to_numpy() == truth).mean() >= 0.97  # measured 0.98
    assert (lin_calls.to_numpy() == truth).mean() < 0.5 and lin_thr > thr  # measured 0.41
    assert neg.max() < thr  # in raw units
    for scale in ("linear", "log"):  # the same for any intensity unit
        scaled, thr_scaled = call_positive(_table(np.r_[neg, pos] * 0.001), "PRM1", "otsu",
                                           otsu_scale=scale)  # fmt: skip
        plain, thr_plain = call_positive(t, "PRM1", "otsu", otsu_scale=scale)
        assert (scaled.to_numpy() == plain.to_numpy()).all()
        assert thr_scaled == pytest.approx(thr_plain * 0.001)
    with pytest.raises(ValueError, match="otsu_scale"):
        call_positive(t, "PRM1", "otsu", otsu_scale="sqrt")


def test_log_otsu_ignores_a_few_very_bright_objects():
    rng = np.random.default_rng(2)
    neg = rng.normal(0, 4, 60)
    pos = np.exp(rng.normal(np.log(120), 0.5, 140))
    truth = np.r_[np.zeros(60, bool), np.ones(143, bool)]
    t = _table(np.r_[neg, pos, [60000.0, 55000.0, 70000.0]])  # debris: 1.5 % of the cells
    calls, _ = call_positive(t, "PRM1", "otsu")
    assert (calls.to_numpy() == truth).mean() >= 0.97
    lin, _ = call_positive(t, "PRM1", "otsu", otsu_scale="linear")
    assert (lin.to_numpy() == truth).mean() < 0.5  # the classic split isolates the debris


def test_rare_positives_are_the_linear_scales_case():
    """The documented trade-off: with 1 % positives the log split cuts through the negatives,
    the linear split finds the positives."""
    rng = np.random.default_rng(3)
    t = _table(np.r_[rng.normal(0, 4, 300), [150.0, 160.0, 170.0]])
    log_calls, _ = call_positive(t, "PRM1", "otsu")
    lin, _ = call_positive(t, "PRM1", "otsu", otsu_scale="linear")
    truth = np.r_[np.zeros(300, bool), np.ones(3, bool)]
    assert lin.to_numpy()[-3:].all() and (lin.to_numpy() == truth).mean() >= 0.99
    assert (log_calls.to_numpy() == truth).mean() < 0.9  # documented failure mode of the default


@pytest.mark.parametrize(
    ("values", "expected_thr"), [([5.0, 5.0, 5.0], 5.0), ([], np.nan), ([np.nan, 3.0], 3.0)]
)
def test_otsu_guard_for_fewer_than_two_distinct_values(values, expected_thr):
    t = _table(values)
    with pytest.warns(RuntimeWarning, match="Otsu cannot split"):
        positive, thr = call_positive(t, "PRM1", "otsu")
    assert not positive.any()
    assert thr == expected_thr or (np.isnan(thr) and np.isnan(expected_thr))


@pytest.mark.parametrize(("k", "n_pos"), [(1.0, 3), (3.0, 2), (10.0, 1), (25.0, 0)])
def test_background_sd_is_per_cell(k, n_pos):
    # excess over background: 1, 3, 7, 19.9 ring SDs -> positive when strictly above k SDs
    t = _table([2.0, 6.0, 14.0, 19.9], sd=2.0)
    t.loc[3, "PRM1_background_sd"] = 1.0
    positive, thr = call_positive(t, "PRM1", "background_sd", k=k)
    assert thr == k and int(positive.sum()) == n_pos


def test_manual_threshold_and_its_errors():
    t = _table([1.0, 10.0, 20.0])
    positive, thr = call_positive(t, "PRM1", "manual", value=10.0)
    assert thr == 10.0 and positive.tolist() == [False, False, True]
    with pytest.raises(ValueError, match="needs a finite threshold"):
        call_positive(t, "PRM1", "manual")
    with pytest.raises(ValueError, match="unknown positivity method"):
        call_positive(t, "PRM1", "kmeans")
    with pytest.raises(ChannelRoleError, match="markers found: \\['PNA', 'PRM1'\\]"):
        call_positive(t, "DAPI", "otsu")


def test_categories_and_call_markers():
    t = _table([0, 40, 0, 40, 0, 40], pna=[0, 0, 30, 30, 0, 30])
    out = call_markers(
        t, {"PRM1": "manual", "PNA": "background_sd"}, thresholds={"PRM1": 20.0}, k=3
    )
    assert "category" not in t.columns  # input untouched
    assert out["category"].tolist() == [
        "neither",
        "PRM1+",
        "PNA+",
        "PRM1+PNA+",
        "neither",
        "PRM1+PNA+",
    ]
    assert list(out["category"].cat.categories) == list(CATEGORIES)
    assert set(CATEGORY_COLORS) == set(CATEGORIES)
    info = out.attrs["thresholds"]
    assert info["PRM1"]["method"] == "manual" and info["PRM1"]["threshold"] == 20.0
    assert info["PNA"]["threshold"] == 3.0 and info["PNA"]["n_positive"] == 3


def test_call_markers_with_one_marker_and_without_any():
    t = _table([0, 40]).drop(columns=[c for c in _table([0]).columns if c.startswith("PNA")])
    out = call_markers(t, "manual", thresholds={"PRM1": 5})
    assert out["PNA_positive"].tolist() == [False, False]
    assert out["category"].tolist() == ["neither", "PRM1+"]
    with pytest.raises(ChannelRoleError, match="quantify the marker channels"):
        call_markers(pd.DataFrame({"label_id": [1]}))


@pytest.mark.parametrize("method", ["otsu", "background_sd"])
def test_calls_on_quantified_scene_recover_the_truth(method):
    lab, chans, truth = marker_scene()
    out = call_markers(quantify(chans, lab, ring_px=(2, 5)), method).merge(truth, on="label_id")
    for m in ("PRM1", "PNA"):
        agreement = (out[f"{m}_positive"] == out[m]).mean()
        assert agreement >= 0.95, (m, method, agreement)
