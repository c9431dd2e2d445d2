"""Configuration stage: what a run is (``RunConfig``), the named profiles, the model presets and
their display names, the run registry (a run's key and its folder) and the ``MTLOCA_*`` defaults.

May import: its own folder, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
