"""The `boe-eval` start-up skips transformers' scikit-learn import (boe_eval.import_cost)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _run(code: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=300)
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
        import transformers
        print(importlib.util.find_spec("sklearn") is not None, "sklearn" in sys.modules)
        print(int(transformers.__version__.split(".")[0]) >= 5)
    """)
    installed_imported, transformers_5 = printed.split("\n")
    if transformers_5 == "True":  # transformers 5 imports scikit-learn lazily itself: nothing for the skip to remove
        assert installed_imported.endswith("False")
    else:  # scikit-learn installed (lm-eval's dependency): imported
        assert installed_imported in ("True True", "False False")


def test_the_skip_leaves_sklearn_to_a_library_that_imports_it_itself():
    pytest.importorskip("sklearn")
    printed = _run("""
        import sys
        from boe_eval.import_cost import skip_sklearn_in_transformers
        import sklearn.metrics  # noqa: F401  (as lm-eval's metrics do, lazily)
        print(skip_sklearn_in_transformers())
        import transformers.utils.import_utils as iu
        print(iu.is_sklearn_available())
    """)
    assert printed.split("\n") == ["False", "True"]


def test_transformers_models_index_reused_equals_a_fresh_build_and_model_classes_still_import():
    printed = _run("""
        import os
        import transformers
        from transformers.utils import import_utils as iu
        from boe_eval.import_cost import reuse_transformers_model_index
        models_init = os.path.join(os.path.dirname(transformers.__file__), "models", "__init__.py")
        fresh = iu.define_import_structure.__wrapped__(models_init)  # uncached: read from the files again
        print(reuse_transformers_model_index())
        reused = iu.define_import_structure(models_init)
        print(reused == fresh, len(fresh[frozenset({"torch"})]) > 100)
        from transformers import AutoModelForMaskedLM, BertForMaskedLM  # noqa: F401
        from transformers.models.bert.modeling_bert import BertForMaskedLM as Direct
        print(BertForMaskedLM is Direct, AutoModelForMaskedLM.__name__)
        print(reuse_transformers_model_index())  # transformers.models imported now: too late, says so
    """)
    assert printed.split("\n") == ["True", "True True", "True AutoModelForMaskedLM", "False"]


def _transformers_has_scipy_flag() -> bool:
    """transformers 4 keeps scipy's availability in one module flag that its losses read at import; 5 does not."""
    pytest.importorskip("scipy")
    from transformers.utils import import_utils

    return isinstance(getattr(import_utils, "_scipy_available", None), bool)


def test_transformers_losses_import_without_scipy_after_the_skip_and_the_flag_is_restored():
    if not _transformers_has_scipy_flag():
        pytest.skip("this transformers has no scipy flag: the skip is a no-op (tested by the trim's return value)")
    printed = _run("""
        import sys
        from boe_eval.import_cost import trim_transformers_start_up
        applied = trim_transformers_start_up()
        print(applied["skip_scipy_in_losses"], applied["reuse_model_index"])
        from transformers import AutoModelForMaskedLM  # noqa: F401
        import transformers.modeling_utils  # noqa: F401
        from transformers.utils import is_scipy_available
        print("scipy" in sys.modules, is_scipy_available())
        from boe_eval.import_cost import skip_scipy_in_transformers_losses
        print(skip_scipy_in_transformers_losses())  # the losses are imported now: too late, says so
    """)
    assert printed.split("\n") == ["True True", "False True", "False"]


def test_without_the_skip_transformers_model_classes_import_scipy_so_the_skip_is_what_removes_it():
    if not _transformers_has_scipy_flag():
        pytest.skip("this transformers has no scipy flag")
    printed = _run("""
        import sys
        import transformers.modeling_utils  # noqa: F401
        print("scipy.optimize" in sys.modules)
    """)
    assert printed == "True"


def test_the_trim_is_a_no_op_where_transformers_lacks_the_flags():
    printed = _run("""
        from transformers.utils import import_utils as iu
        flags = [isinstance(getattr(iu, name, None), bool) for name in ("_sklearn_available", "_scipy_available")]
        from boe_eval.import_cost import trim_transformers_start_up
        applied = trim_transformers_start_up()  # in a fresh process: applies exactly where the flag exists
        print(applied["skip_sklearn"] == flags[0], applied["skip_scipy_in_losses"] == flags[1])
    """)
    assert printed == "True True"


def test_gc_pause_for_start_up_is_undone_by_the_resume_and_freezes_the_start_up_objects():
    printed = _run("""
        import gc
        from boe_eval.import_cost import pause_gc_for_start_up, resume_gc_after_start_up
        print(resume_gc_after_start_up())  # nothing paused: nothing to do
        print(pause_gc_for_start_up(), gc.isenabled(), pause_gc_for_start_up())
        garbage = []
        garbage.append(garbage)  # a cycle, made while paused
        print(resume_gc_after_start_up(), gc.isenabled(), gc.get_freeze_count() > 0, resume_gc_after_start_up())
    """)
    assert printed.split("\n") == ["False", "True False False", "True True True False"]


def test_boe_eval_decodes_with_the_collector_back_on(tmp_path):
    printed = _run("""
        import gc, sys
        import boe_eval.decoding.meter as meter
        from boe_eval.harness import cli
        seen = []
        def first_forward(self, *args, **kwargs):
            seen.append(gc.isenabled())
            raise SystemExit(0)
        meter.MeteredDenoiser.forward = first_forward
        sys.argv = ["boe-eval", "sampler=confidence", "limit=1", "plot=false", "output_dir=" + sys.argv[1]]
        try:
            cli.main()
        except SystemExit:
            pass
        print(seen)
    """, str(tmp_path / "out"))
    assert printed.endswith("[True]")
