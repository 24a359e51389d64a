"""Category counts and the paper's statistic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_hrs.markers import call_markers, format_summary, summarize


def _called(prm1, pna, classes=None):
    t = pd.DataFrame(
        {
            "label_id": np.arange(1, len(prm1) + 1),
            "PRM1_mean_bgsub": np.asarray(prm1, float),
            "PRM1_mean": 0.0,
            "PNA_mean_bgsub": np.asarray(pna, float),
            "PNA_mean": 0.0,
        }
    )
    if classes is not None:
        t["class_name"] = classes
    return call_markers(t, "manual", thresholds={"PRM1": 0.5, "PNA": 0.5})


def test_counts_fractions_and_the_marker_positive_statistic():
    s = summarize(_called([1, 1, 0, 0, 1, 0, 0, 0], [1, 0, 1, 0, 1, 0, 0, 0]))
    assert s["counts"] == {"PRM1+PNA+": 2, "PRM1+": 1, "PNA+": 1, "neither": 4}
    assert s["n_cells"] == 8 and s["n_marker_positive"] == 4
    assert s["fraction_marker_positive"] == 0.5
    assert s["fraction_PRM1_positive"] == 3 / 8 and s["fraction_PNA_positive"] == 3 / 8
    assert s["fraction_both"] == 2 / 8 and s["fraction_neither"] == 0.5
    assert sum(s["fractions"].values()) == pytest.approx(1.0)
    assert s["thresholds"]["PRM1"]["threshold"] == 0.5
    assert "no 'class_name' column" in s["population"]


def test_hrs_only_counts_detected_round_spermatids():
    classes = ["hRS", "RBC", "hrs", "lymphocyte", "hRS"]
    t = _called([1, 1, 0, 1, 0], [0, 1, 0, 0, 0], classes)
    s = summarize(t)
    assert (s["n_cells"], s["n_total"], s["n_marker_positive"]) == (3, 5, 1)
    assert s["fraction_marker_positive"] == pytest.approx(1 / 3)
    every = summarize(t, hrs_only=False)
    assert (every["n_cells"], every["n_marker_positive"]) == (5, 3)
    other = summarize(t, hrs_classes=("RBC",))
    assert other["n_cells"] == 1 and other["counts"]["PRM1+PNA+"] == 1


def test_empty_selection_gives_nan_fractions_and_text():
    s = summarize(_called([1], [0], ["RBC"]))
    assert s["n_cells"] == 0 and np.isnan(s["fraction_marker_positive"])
    text = format_summary(s)
    assert "0 / 0 = n/a" in text


def test_format_summary_and_missing_calls():
    text = format_summary(summarize(_called([1, 0], [1, 0])))
    assert "PRM1+ and/or PNA+: 1 / 2 = 50.0%" in text
    assert "threshold PRM1: manual" in text
    with pytest.raises(ValueError, match="call_markers"):
        summarize(pd.DataFrame({"label_id": [1]}))
