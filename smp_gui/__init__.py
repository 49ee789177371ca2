"""smp_gui: SMP Inspector's desktop window (PyQt6 + pyqtgraph).

Views and a thin controller over the engine `smp_model`, which does all photometry:
``app`` (entry point ``smp-gui``), ``main_window``, ``panels``, ``markers``,
``exposure_browser``, ``fit_controls``, ``results_table``, ``chi2map_view``, ``dialogs``
and ``controller`` (the worker thread).
"""
