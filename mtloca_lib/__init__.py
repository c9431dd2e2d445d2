"""mtloca: a reproducible companion to MTL-OCA (Lu et al., Front. Oncol. 2025).

Multi-task segmentation and classification of breast ultrasound images with
object contextual attention. See the README for the map from the paper's
tables and figures to notebooks, and the list of interpretations.

The package is laid out by pipeline stage (``docs/DESIGN.md``), imports pointing only
downward: ``cli``/``reproduce`` and ``report`` -> ``engine`` -> ``data``, ``models``;
``errors``, ``runio`` and ``hardware`` sit below every stage.

- :mod:`mtloca_lib.data`: readers, preprocessing, augmentation, the cache, near-duplicates, splits.
- :mod:`mtloca_lib.models`: the networks and the losses.
- :mod:`mtloca_lib.engine`: configs, training, cross-validation, metrics, statistics, prediction.
- :mod:`mtloca_lib.report`: what each notebook shows, one module per notebook.

The names most scripts call are re-exported here (``make_config``, ``run_cv``,
``train_final``, ``build_model``, ``ModelConfig``), so ``from mtloca_lib import run_cv``
keeps working whatever the module it lives in.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "make_config": "mtloca_lib.config.run_config",
    "RunConfig": "mtloca_lib.config.run_config",
    "run_cv": "mtloca_lib.training.cv",
    "train_final": "mtloca_lib.training.final",
    "evaluate_external": "mtloca_lib.inference.external",
    "build_model": "mtloca_lib.models",
    "ModelConfig": "mtloca_lib.models",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """Import a re-exported name on first use (keeps ``import mtloca_lib`` light)."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mtloca_lib' has no attribute {name!r}")
