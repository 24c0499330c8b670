"""Start-up cost of imports that a boe-eval job does not use.

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
"""

from __future__ import annotations

import sys


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


__all__ = ["skip_sklearn_in_transformers"]
