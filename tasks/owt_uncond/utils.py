"""owt_uncond: unconditional generation scored like ReMDM's sample_eval (boe_eval.metrics.uncond_task): local paths
only, from the environment: BOE_UNCOND_REFERENCE (OpenWebText validation chunks, .jsonl with `text`),
BOE_UNCOND_SCORER (GPT-2 large directory), BOE_UNCOND_FEATURIZER (default: the scorer)."""

from boe_eval.metrics.uncond_task import UncondTask

_task = UncondTask(None, None)
load, doc_to_text, process_results = _task.load, _task.doc_to_text, _task.process_results
mauve, gen_ppl = _task.mauve, _task.gen_ppl
