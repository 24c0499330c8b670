"""uncond_grammar: unconditional generation on the built-in grammar corpus (boe_eval.metrics.uncond_task).
Defaults: the committed reference documents, the shipped AR scorer / featurizer (a tiny GPT-2 trained on the corpus),
the grammar's exact likelihood as a second GenPPL; BOE_UNCOND_SCORER / _FEATURIZER / _REFERENCE override them."""

from pathlib import Path

from boe_eval.metrics.uncond_task import UncondTask
from boe_eval.models.loading import BUILTIN_DIR
from boe_eval.tiny.grammar import WordHMM

_task = UncondTask(Path(__file__).resolve().parent / "data" / "reference.jsonl", BUILTIN_DIR / "tiny_grammar" / "ar_scorer",
                   oracle_log_likelihood=WordHMM().log_likelihood)
load, doc_to_text, process_results = _task.load, _task.doc_to_text, _task.process_results
mauve, gen_ppl, oracle_gen_ppl = _task.mauve, _task.gen_ppl, _task.oracle_gen_ppl
