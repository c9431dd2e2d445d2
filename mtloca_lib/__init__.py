"""mtloca: a reproducible companion to MTL-OCA (Lu et al., Front. Oncol. 2025).

Multi-task segmentation and classification of breast ultrasound images with
object contextual attention. See the README for the map from the paper's
tables and figures to notebooks, and the list of interpretations.

The package is laid out by pipeline stage (``docs/DESIGN.md``), imports pointing only
downward: the faces (``cli``, ``reproduce``) -> ``report`` -> ``experiments`` -> ``perf``,
``inference`` -> ``training`` -> ``evaluation`` -> ``config`` -> ``data``, ``models`` -> the base
modules (``errors``, ``runio``, ``hardware``) -> ``settings``.

- :mod:`mtloca_lib.data`: readers, pixel rules, preprocessing, augmentation, the cache, near-duplicates, splits.
- :mod:`mtloca_lib.models`: the networks and the losses.
- :mod:`mtloca_lib.config`: run configs, the profile table, model presets, the run registry.
- :mod:`mtloca_lib.training`: one fold's loop, cross-validation, fold assignment, replicas, the final model.
- :mod:`mtloca_lib.evaluation`: metrics, statistics, reading runs, comparisons, seeds, convergence.
- :mod:`mtloca_lib.inference`: prediction on files, external scoring, Grad-CAM, overlays.
- :mod:`mtloca_lib.perf`: the benchmark, the roofline, the FLOP table.
- :mod:`mtloca_lib.experiments`: the paper's run sets, the notebooks' parameters, the run of record.
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
