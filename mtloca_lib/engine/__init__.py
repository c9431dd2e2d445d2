"""Engine stage: configurations, training, cross-validation, evaluation, statistics.

``config`` (run configs, profiles), ``train`` (one fold), ``cv`` (k folds, resumable),
``protocol`` (fold assignment of a run), ``final`` (one model on a whole dataset),
``external`` (scoring a run on another dataset), ``matrix`` (many runs in parallel),
``experiments`` (the notebooks' parameters and run sets), ``runs`` (reading run
directories), ``metrics``, ``stats``, ``comparisons`` (paired tests between runs),
``seeds`` (seed-level tests), ``convergence`` (learning curves and the convergence rule),
``gradcam``, ``predict``, ``overlay`` (the contour drawing ``predict`` writes), the fast
paths (``channels_last``), ``flops`` and ``benchmark``.

May import: ``mtloca_lib.data``, ``mtloca_lib.models``, the base modules
(``errors``, ``runio``, ``hardware``) and modules of this folder. Never ``report``.
"""
