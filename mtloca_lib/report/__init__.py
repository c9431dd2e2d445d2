"""Report stage: what the notebooks show, one module per notebook, named after it.

=================================  ==========================================
notebook                           module
=================================  ==========================================
``00_data.ipynb``                  ``report.data``
``01_training.ipynb``              ``report.training``
``02_segmentation.ipynb``          ``report.segmentation``
``03_classification.ipynb``        ``report.classification``
``04_gradcam.ipynb``               ``report.gradcam``
``05_udiat.ipynb``                 ``report.udiat``
``06_ablation.ipynb``              ``report.ablation``
``07_reproduction_report.ipynb``   ``report.reproduction_report``
``08_convergence.ipynb``           ``report.convergence``
``09_external_validation.ipynb``   ``report.external_validation``
=================================  ==========================================

``common`` holds what every notebook uses (parameter banners, figure and table saving,
the plotting helpers); ``results_section`` and ``findings`` write the README's generated
blocks (``busi_runs``: how both find and describe the committed BUSI runs). Modules here
compute nothing heavy themselves: they read run directories and call the stages below.

May import: its own folder, ``experiments``, ``perf``, ``inference``, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
