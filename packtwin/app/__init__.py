"""The pack explorer: a Panel + HoloViews app over a truth store and the twin's predictions.

The only package that imports Panel, HoloViews or Bokeh. Submodules:

- ``sources``: open the truth store, prediction stores and a live twin, turning every failure into a
  message the page can show;
- ``state``: ``PackData``, the selection state and the data behind every plot (lazy, sliced, cached);
- ``views``: classes that only present ``PackData`` as HoloViews/Panel objects;
- ``layout``: ``build_app``, the page (widgets + views);
- ``serve``: ``main(argv)``, the ``packtwin app`` command.

Nothing here is imported by ``import packtwin``, and no data is read at import time.
"""
