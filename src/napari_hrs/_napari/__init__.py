"""napari-facing functions named in ``napari.yaml`` (reader, writer, sample data).

Nothing here imports Qt at module level; widgets live in :mod:`napari_hrs._widgets`.
"""
