"""The `boe-eval` start-up skips transformers' scikit-learn import (boe_eval.import_cost)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_transformers_model_classes_import_without_sklearn_after_the_skip():
    printed = _run("""
        import sys
        import transformers.utils.import_utils as iu
        flag = isinstance(getattr(iu, "_sklearn_available", None), bool)
        from boe_eval.import_cost import skip_sklearn_in_transformers
        print(skip_sklearn_in_transformers() == flag)  # transformers 5 has no such flag: a no-op there
        from transformers import AutoModelForMaskedLM  # noqa: F401  (imports the generation utilities)
        import transformers.generation.candidate_generator  # noqa: F401
        print("sklearn" in sys.modules, "scipy.stats" in sys.modules)
        print(skip_sklearn_in_transformers())  # too late now: says so
    """)
    assert printed.split("\n") == ["True", "False False", "False"]


def test_without_the_skip_transformers_imports_sklearn_so_the_skip_is_what_removes_it():
    printed = _run("""
        import sys
        import importlib.util
        from transformers import AutoModelForMaskedLM  # noqa: F401
        import transformers.generation.candidate_generator  # noqa: F401
        print(importlib.util.find_spec("sklearn") is not None, "sklearn" in sys.modules)
    """)
    assert printed in ("True True", "False False")  # scikit-learn installed (lm-eval's dependency): imported


def test_the_skip_leaves_sklearn_to_a_library_that_imports_it_itself():
    printed = _run("""
        import sys
        from boe_eval.import_cost import skip_sklearn_in_transformers
        import sklearn.metrics  # noqa: F401  (as lm-eval's metrics do, lazily)
        print(skip_sklearn_in_transformers())
        import transformers.utils.import_utils as iu
        print(iu.is_sklearn_available())
    """)
    assert printed.split("\n") == ["False", "True"]
