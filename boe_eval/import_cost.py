"""Start-up cost that a boe-eval job does not need: imports it does not use (`trim_transformers_start_up` does the
three below) and the garbage collector rescanning the imports (`pause_gc_for_start_up`).

transformers imports scikit-learn (and with it scipy.stats) when its generation utilities are first imported, which
every `AutoModel*` class does, if scikit-learn is installed, and lm-eval installs it. transformers uses it for one
thing: `sklearn.metrics.roc_curve` in assisted generation's confidence-threshold adaptation
(`AssistedCandidateGenerator`), which a masked-diffusion decoding loop never calls. That import is about 1.5 s of
CPU, a quarter of a job's time to its first forward (scripts/startup_time.py). `skip_sklearn_in_transformers`
tells transformers, before it imports its generation utilities, that scikit-learn is absent. The only other
reader of that flag in transformers is its deprecated GLUE metrics helpers (`transformers.data.metrics`), which
boe-eval does not use; libraries that import scikit-learn themselves (lm-eval's metrics) are unaffected. Called by
the `boe-eval` command only, never on import of the package. transformers 5 imports scikit-learn only where it
uses it and has no such flag: there this does nothing.

`reuse_transformers_model_index` stops transformers from indexing its ~400 model folders twice, and
`skip_scipy_in_transformers_losses` stops its object-detection training losses from importing scipy.optimize
(about 0.3 s of CPU each, scripts/startup_time.py; results/startup_time has the measured split). The one thing the
latter takes away, in a `boe-eval` process only: training a DETR-family model's Hungarian-matching loss.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path


def skip_sklearn_in_transformers() -> bool:
    """Before transformers imports its generation utilities: mark scikit-learn unavailable to transformers.
    Returns whether it did (not when those utilities, or scikit-learn, are imported already, or when the flag is
    not where transformers kept it)."""
    if "transformers.generation.candidate_generator" in sys.modules or "sklearn" in sys.modules:
        return False
    try:
        from transformers.utils import import_utils
    except ImportError:
        return False
    if not isinstance(getattr(import_utils, "_sklearn_available", None), bool):
        return False
    import_utils._sklearn_available = False
    return True


def reuse_transformers_model_index() -> bool:
    """Before `transformers.models` is imported: let it reuse the index of transformers' ~400 model folders that
    `import transformers` has just built, instead of building it again (about 0.3 s of CPU).

    Both `transformers/__init__.py` and `transformers/models/__init__.py` call `define_import_structure` on the
    models folder (the first with `prefix="models"`); the folder-by-folder cache below it holds 128 entries, fewer
    than the folders, so the second call reads and parses every model file again. Here the second call is answered
    from the first call's (cached) result with the `models.` prefix removed: the same structure (the test compares
    it with a fresh build). Returns whether it did (not when `transformers.models` is imported already, or when
    transformers does not build its index that way)."""
    if "transformers.models" in sys.modules:
        return False
    try:
        import transformers
        from transformers.utils import import_utils
    except ImportError:
        return False
    original = getattr(import_utils, "define_import_structure", None)
    if not hasattr(original, "cache_info") or getattr(original, "_boe_reuses_model_index", False):
        return False
    models_dir = Path(transformers.__file__).parent / "models"

    def define_import_structure(module_path, prefix=None):
        path = Path(module_path)
        if prefix is None and path in (models_dir, models_dir / "__init__.py"):
            prefixed = original(models_dir, prefix="models")  # transformers/__init__.py's call: cached
            return {
                backends: {name[len("models."):]: set(objects) for name, objects in modules.items() if name.startswith("models.")}
                for backends, modules in prefixed.items()
            }
        return original(module_path, prefix)

    define_import_structure._boe_reuses_model_index = True
    import_utils.define_import_structure = define_import_structure
    return True


def skip_scipy_in_transformers_losses() -> bool:
    """Import transformers' loss functions with scipy marked unavailable to them (about 0.3 s of CPU).

    `transformers.modeling_utils` imports every loss function, and the object-detection ones (DETR and its
    relatives) import `scipy.optimize.linear_sum_assignment` for their Hungarian matcher: a training loss of vision
    models that a boe-eval job never computes. Only that import is skipped: the flag is restored at once, so
    everything imported later (FNet, Mask2Former, ...) sees scipy as it is. Returns whether it did (not when the
    losses or scipy are imported already, or when the flag is not where transformers kept it)."""
    if "transformers.loss.loss_utils" in sys.modules or "scipy" in sys.modules:
        return False
    try:
        from transformers.utils import import_utils
    except ImportError:
        return False
    flag = getattr(import_utils, "_scipy_available", None)
    if not isinstance(flag, bool):
        return False
    import_utils._scipy_available = False
    try:
        import transformers.loss.loss_utils  # noqa: F401
    except ImportError:
        return False
    finally:
        import_utils._scipy_available = flag
    return True


_GC_PAUSED = False


def pause_gc_for_start_up() -> bool:
    """Turn the cyclic garbage collector off while the command imports its libraries and composes its job.

    The start-up builds ~450,000 long-lived objects (torch, transformers, lm-eval, Hydra's configs) and little
    garbage, yet the collector, triggered by the allocations, scans the whole growing heap again and again: 7 full
    collections, about 1 s of CPU, a fifth of the time to the first forward (scripts/startup_time.py). Returns
    whether it did (not when the collector is already off). `resume_gc_after_start_up` turns it back on."""
    global _GC_PAUSED
    if not gc.isenabled():
        return False
    gc.disable()
    _GC_PAUSED = True
    return True


def resume_gc_after_start_up() -> bool:
    """Before the model loads: freeze what the start-up built (`gc.freeze`: later collections skip those objects,
    which live as long as the process anyway) and turn the collector back on, so model loading and decoding collect
    as usual. The start-up's own garbage (~30,000 small objects, measured at the first forward) is frozen with it,
    not freed; nothing large exists before the model loads. Returns whether it did (only after a pause)."""
    global _GC_PAUSED
    if not _GC_PAUSED:
        return False
    _GC_PAUSED = False
    gc.freeze()
    gc.enable()
    return True


def trim_transformers_start_up() -> dict[str, bool]:
    """Everything above, in the order it must happen, before any transformers model class is imported; returns
    which applied. Called by the `boe-eval` command only."""
    return {
        "skip_sklearn": skip_sklearn_in_transformers(),
        "reuse_model_index": reuse_transformers_model_index(),
        "skip_scipy_in_losses": skip_scipy_in_transformers_losses(),
    }


__all__ = [
    "pause_gc_for_start_up",
    "resume_gc_after_start_up",
    "reuse_transformers_model_index",
    "skip_scipy_in_transformers_losses",
    "skip_sklearn_in_transformers",
    "trim_transformers_start_up",
]
