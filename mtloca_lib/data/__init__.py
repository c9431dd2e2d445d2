"""Data stage: raw images and masks in, prepared arrays and fold assignments' inputs out.

Readers (``busi``, ``udiat``, ``folder``, ``phantom``) return the plain records of
``records``; ``preprocess`` resizes and computes the Gaussian derivative; ``augment``
holds the training-time augmentation; ``datasets`` dispatches by name and caches the
prepared arrays; ``duplicates`` finds near-duplicate groups; ``splits`` draws stratified
(grouped) folds; ``summary`` is the data table (the paper's Table 1).

May import: its own folder and the base modules; never a stage above it or beside it.
"""
