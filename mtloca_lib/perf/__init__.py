"""Performance stage: ``mtloca benchmark`` (``benchmark`` and its row builders), the measured
matrix-multiply roofline and interleaved timing (``roofline``), and the parameter/FLOP table of
the models (``flops``).

May import: its own folder, ``training``, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
