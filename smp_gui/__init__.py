"""smp_gui: SMP Inspector's desktop window (PyQt6 + pyqtgraph).

Views and a thin controller over the engine `smp_model`, which does all photometry:
``app`` (entry point ``smp-gui``), ``windows`` (makes the windows and lets each reach the
other), ``inspector`` (the five-panel window of one detection and its widgets),
``survey`` (a batch output as a table), ``state`` (the inspector's Qt-free model),
``session`` (saved sessions, read back), ``controller`` (the worker thread), ``loader``
(builds in child processes), ``dialogs`` and ``keys``.
"""

__all__: list[str] = []
