"""Training stage: one fold's loop (``loop``), the execution fast paths (``channels_last``), folds
trained together (``replicas``), the fold assignment of a protocol (``protocol``), k-fold
cross-validation (``cv``), the final model on a whole dataset (``final``) and many runs in
parallel processes (``matrix``).

May import: its own folder, ``evaluation``, ``config``, ``data``, ``models`` and the base modules; never a stage above it or beside it.
"""
