"""The pack explorer: a Panel + HoloViews app over a truth or measured store and the twin's
predictions or estimates (with their uncertainty bands where the store has no truth).

The only package that imports Panel, HoloViews or Bokeh. Submodules:

- ``sources``: open the truth store, prediction stores and a live twin, turning every failure into a
  message the page can show;
- ``selection``: ``Selection``, what the user has chosen (``param`` parameters the widgets edit);
- ``reader``: ``StoreReader``, cached slice reads of the stores (units converted for display here);
- ``reductions``: pure functions from arrays to what a view plots (colour floors included);
- ``summary``: pure pack-summary functions (robust-z outliers, SOC spread, plating alarms, weakest
  cells, growth over cycles);
- ``state``: ``PackData``, the three above joined for the current selection;
- ``views``: classes that only present ``PackData`` as HoloViews/Panel objects; ``summary_view``
  (the pack summary) and ``life_view`` (capacity fade, snapshot player) likewise;
- ``layout``: ``build_app``, the page (widgets + views);
- ``serve``: ``main(argv)``, the ``packtwin app`` command; it injects the live twin, the only
  place the app reaches the model code; ``serve()`` also serves the live replay page;
- ``live``: ``LivePack``, the page of ``packtwin replay --app`` (the replay's ``Run``, given by
  ``packtwin.eval.replay``, streamed into HoloViews ``Buffer``/``Pipe`` streams).

Nothing here is imported by ``import packtwin``, and no data is read at import time.
"""
