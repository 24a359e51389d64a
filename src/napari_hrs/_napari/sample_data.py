"""npe2 sample data: the synthetic hRS acquisition with its ground-truth labels."""

from __future__ import annotations

from typing import Any


def sample_acquisition() -> list[tuple[Any, dict[str, Any], str]]:
    """Layers of the sample acquisition: brightfield, PRM1, PNA and ``ground_truth`` labels."""
    from napari_hrs._napari.reader import acquisition_layers
    from napari_hrs.io import open_acquisition
    from napari_hrs.synth.sample import sample_path

    return acquisition_layers(open_acquisition(sample_path()))
