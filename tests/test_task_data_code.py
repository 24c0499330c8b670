"""Vendored HumanEval and MBPP data (checksums, record counts, splits, the facts SOURCES.md states) and
the wiring of the humaneval_* / mbpp_* task YAMLs: each loads offline through lm-eval's TaskManager
from another working directory, renders its protocol's prompt, declares its stops, asks for
--confirm_run_unsafe_code, and the Hydra task configs point at it."""

from __future__ import annotations

import ast
import hashlib
import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tasks"
NAMES = ["humaneval_base", "humaneval_d1", "mbpp_base", "mbpp_d1"]

# (path under tasks/, sha256 as recorded in tasks/<task>/SOURCES.md, record count)
VENDORED = [
    ("humaneval/data/HumanEval.jsonl.gz", "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef", 164),
    ("mbpp/data/mbpp.jsonl", "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f", 974),
    ("mbpp/data/sanitized-mbpp.json", "ca95deaa9a01ef0a6f439f88bcf0dd3db3563d22f22aad6cae04ebb9a8d8c8e9", 427),
]


def _records(rel: str) -> list[dict]:
    from boe_eval.harness.task_data import read_records

    return read_records(TASKS / rel)


@pytest.mark.parametrize("rel, sha256, count", VENDORED, ids=[v[0] for v in VENDORED])
def test_vendored_file_checksum_count_and_provenance(rel, sha256, count):
    path = TASKS / rel
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    assert len(_records(rel)) == count
    task_dir = TASKS / rel.split("/")[0]
    sources = (task_dir / "SOURCES.md").read_text()
    assert sha256 in sources and Path(rel).name in sources
    licence = (task_dir / "LICENSE").read_text()
    assert ("MIT License" in licence) if rel.startswith("humaneval") else ("CC BY 4.0" in licence)


def test_humaneval_schema():
    rows = _records("humaneval/data/HumanEval.jsonl.gz")
    assert [r["task_id"] for r in rows] == [f"HumanEval/{i}" for i in range(164)]
    for r in rows:
        assert set(r) == {"task_id", "prompt", "entry_point", "canonical_solution", "test"}
        assert f"def {r['entry_point']}(" in r["prompt"] and "def check(candidate)" in r["test"]


def test_mbpp_splits_schema_and_setup_code():
    rows = _records("mbpp/data/mbpp.jsonl")
    assert [r["task_id"] for r in rows] == list(range(1, 975))
    test = [r for r in rows if 11 <= r["task_id"] <= 510]
    assert len(test) == 500
    assert all(len(r["test_list"]) == 3 and all(t.startswith("assert") for t in r["test_list"]) for r in test)
    assert [r["task_id"] for r in rows if r["test_setup_code"]] == [367, 927]  # 927 is in the train split
    sanitized = _records("mbpp/data/sanitized-mbpp.json")
    by_split = [sum(lo <= r["task_id"] <= hi for r in sanitized) for lo, hi in ((1, 10), (11, 510), (511, 600), (601, 974))]
    assert by_split == [7, 257, 43, 120]


# ------------------------------------------------------------------------------ task wiring
@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """The four tasks loaded by lm-eval from another working directory (Hydra changes it)."""
    from lm_eval.tasks import TaskManager

    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("elsewhere"))
    try:
        loaded = TaskManager(include_path=[str(TASKS)], include_defaults=False).load(NAMES)["tasks"]
        for task in loaded.values():
            task.set_fewshot_seed(1234)
        yield loaded
    finally:
        os.chdir(cwd)


def _prompt(task, doc, shots=None) -> str:
    n = task.config.num_fewshot or 0 if shots is None else shots
    return task.fewshot_context(doc, n, gen_prefix=task.doc_to_prefix(doc))


def test_sizes_stops_unsafe_flag_and_metric(tasks):
    assert {name: len(task.eval_docs) for name, task in tasks.items()} == {
        "humaneval_base": 164, "humaneval_d1": 164, "mbpp_base": 500, "mbpp_d1": 500,
    }
    assert [d["task_id"] for d in tasks["mbpp_base"].eval_docs] == list(range(11, 511))
    for name, task in tasks.items():
        assert task.UNSAFE_CODE, name  # lm-eval refuses to run it without --confirm_run_unsafe_code
        assert list(task.aggregation()) == ["pass_at_1"], name
        until = task.config.generation_kwargs["until"]
        if name == "humaneval_base":  # lm-eval humaneval's stop strings
            assert until == ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
        elif name == "mbpp_base":
            assert until == ["[DONE]"]
        else:  # the d1 variants stop at the fence that closes the prefilled ```python block
            assert until == ["```"] and task.config.gen_prefix == "```python\n"
        assert task.config.generation_kwargs["max_gen_toks"] >= (1024 if name.endswith("_base") else 512), name


def test_humaneval_prompts(tasks):
    doc = tasks["humaneval_base"].eval_docs[0]
    assert _prompt(tasks["humaneval_base"], doc) == doc["prompt"]
    assert doc["prompt"].endswith('"""\n')
    d1 = tasks["humaneval_d1"]
    assert _prompt(d1, doc) == "Complete the following python code:\n" + doc["prompt"] + "```python\n"


def _lm_eval_mbpp_fewshot() -> list[dict]:
    """lm-eval's own MBPP exemplars, read from its source without importing it (its module loads
    HF `code_eval` from the hub at import time)."""
    import lm_eval

    source = (Path(lm_eval.__file__).parent / "tasks" / "mbpp" / "utils.py").read_text()
    function = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "list_fewshot_samples")
    return ast.literal_eval(function.body[-1].value)


def test_mbpp_base_prompt_is_lm_evals_three_shot_prompt(tasks):
    task = tasks["mbpp_base"]
    shots = _lm_eval_mbpp_fewshot()
    assert [s["task_id"] for s in shots] == [2, 3, 4]
    ours = {r["task_id"]: r for r in _records("mbpp/data/mbpp.jsonl")}
    for shot in shots:  # lm-eval hard-codes them; here they are read from the data
        assert (shot["text"], shot["code"], shot["test_list"]) == tuple(ours[shot["task_id"]][k] for k in ("text", "code", "test_list"))

    def block(r):
        return (f"You are an expert Python programmer, and here is your task: {r['text']} Your code should pass these "
                f"tests:\n\n" + "\n".join(r["test_list"]) + "\n[BEGIN]\n")

    doc = task.eval_docs[0]
    expected = "".join(block(s) + s["code"] + "\n[DONE]\n\n" for s in shots) + block(doc)
    assert _prompt(task, doc) == expected


def test_mbpp_d1_prompt_zero_and_three_shot(tasks):
    task = tasks["mbpp_d1"]
    doc = task.eval_docs[0]
    user = (f"You are an expert Python programmer, and here is your task:\n{doc['text']}\n"
            "Your code should pass these tests:\n" + "\n".join(doc["test_list"]))
    assert _prompt(task, doc) == user + "\n```python\n"
    three = _prompt(task, doc, shots=3)
    assert three.endswith(user + "\n```python\n") and three.count("```python\n") == 4
    assert "def similar_elements(test_tup1, test_tup2):" in three


def test_d1_prompt_through_a_chat_template_prefills_the_assistant_turn(tasks):
    """With --apply_chat_template lm-eval sends [user: prompt, assistant: "```python\\n"] and asks to
    continue the final message: the rendered text is the user turn, the assistant header and the
    opening fence, not a closed assistant turn."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|eot|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )

    def chat(history, add_generation_prompt=True):  # lm-eval's HFLM.apply_chat_template
        return tokenizer.apply_chat_template(
            history, tokenize=False, add_generation_prompt=add_generation_prompt, continue_final_message=not add_generation_prompt
        )

    for name in ("humaneval_d1", "mbpp_d1"):
        task = tasks[name]
        doc = task.eval_docs[3]
        rendered = task.fewshot_context(doc, 0, apply_chat_template=True, chat_template=chat, gen_prefix=task.doc_to_prefix(doc))
        user = tokenizer.apply_chat_template([{"role": "user", "content": task.doc_to_text(doc)}], tokenize=False,
                                             add_generation_prompt=True)
        assert rendered == user + "```python\n", name


def test_hydra_task_configs_point_at_existing_tasks_and_metrics(tasks):
    import yaml

    configs = {p.stem: yaml.safe_load(p.read_text()) for p in (REPO / "configs" / "task").glob("*.yaml")
               if re.match(r"(humaneval|mbpp)", p.stem)}
    assert sorted(configs) == ["humaneval", "humaneval_base", "humaneval_d1", "mbpp", "mbpp_base", "mbpp_d1"]
    for stem, cfg in configs.items():
        assert cfg["name"] == stem and cfg["primary_metric"] == "pass_at_1"
        assert cfg["lm_eval_task"] == (stem if stem.endswith(("_base", "_d1")) else stem + "_d1")  # aliases: d1
        assert cfg["lm_eval_task"] in tasks
        if cfg["lm_eval_task"].endswith("_d1"):  # d1 decoding: block 32, two tokens per step
            assert (cfg["gen_length"], cfg["block_length"], cfg["steps"]) == (256, 32, 128)
        else:  # LLaDA's base setting: gen = steps = block
            assert cfg["gen_length"] == cfg["steps"] == cfg["block_length"] == 1024
