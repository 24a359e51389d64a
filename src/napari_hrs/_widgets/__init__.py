"""napari dock widgets (magicgui containers): thin front ends over the Qt-free core.

- :class:`~._detect.DetectWidget`: :func:`napari_hrs.engine.detect` in a worker, live score
  threshold.
- :class:`~._compare.CompareWidget`: brightfield / PRM1 / PNA side by side, cell gallery.
- :class:`~._markers.MarkersWidget`: :mod:`napari_hrs.markers`, categories, summary;
  :class:`~._scatter.ScatterWidget`: PRM1 vs PNA, linked with the viewer.
- :class:`~._export.ExportWidget`: :mod:`napari_hrs.io.export`.

The npe2 manifest points at the classes: napari passes the viewer to a widget class whose
``__init__`` takes a ``napari.viewer.Viewer`` (it inspects ``__init__``, which a plain function
does not have). Nothing is imported here, so loading the manifest stays cheap.
"""
