"""oracle_hmm_two_modes: data, prompt and exact metrics (boe_eval.oracles.task)."""

from boe_eval.oracles.task import OracleTask

_task = OracleTask("hmm_two_modes", __file__)
load, doc_to_text, process_results = _task.load, _task.doc_to_text, _task.process_results
