"""Vendored task data (checksums, record counts, the facts SOURCES.md states) and the wiring of the
GSM8K, MATH500, Sudoku and Countdown task YAMLs: each loads offline through lm-eval's TaskManager
from any working directory, renders the protocol's prompt, and its process_results reports exactly
the metrics its YAML declares (1 for a reference answer)."""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tasks"

# (path under tasks/, sha256 as recorded in tasks/<task>/SOURCES.md, record count)
VENDORED = [
    ("gsm8k/data/test.jsonl", "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14", 1319),
    ("gsm8k/data/train.jsonl", "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465", 7473),
    ("math500/data/test.jsonl", "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132", 500),
    ("math500/data/minerva_fewshot.jsonl", "b70d5180b6bc699bd6a3f9188c3aa2a6ae99087ca7fd77b9461f394c5c10a7b7", 4),
    ("sudoku/data/4x4_test_sudoku.csv", "ef86c7c28ebef88484d85fda59b3909a7b621241aa1abf36343437dbc4a3ffb6", 500),
    ("countdown/data/countdown_cd3_test.jsonl", "9916f614621e26fb2b035ed4ea641e35e4fff0d533bb9b9c7bcaaa61017d88c6", 256),
]


def _records(path: Path) -> list:
    from boe_eval.harness.task_data import read_records

    return read_records(path)


@pytest.mark.parametrize("rel, sha256, count", VENDORED, ids=[v[0] for v in VENDORED])
def test_vendored_file_checksum_count_and_provenance(rel, sha256, count):
    path = TASKS / rel
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    assert len(_records(path)) == count
    task_dir = TASKS / rel.split("/")[0]
    sources = (task_dir / "SOURCES.md").read_text()
    assert sha256 in sources and Path(rel).name in sources
    assert (task_dir / "LICENSE").read_text().strip()


def test_gsm8k_schema():
    for split in ("test", "train"):
        for row in _records(TASKS / "gsm8k" / "data" / f"{split}.jsonl"):
            assert set(row) == {"question", "answer"}
            assert re.search(r"\n#### -?[\d,]+(\.\d+)?$", row["answer"]), row["answer"][-40:]


def test_math500_schema_and_subject_counts():
    rows = _records(TASKS / "math500" / "data" / "test.jsonl")
    assert {tuple(sorted(r)) for r in rows} == {("answer", "level", "problem", "solution", "subject", "unique_id")}
    assert len({r["unique_id"] for r in rows}) == 500
    subjects: dict[str, int] = {}
    for r in rows:
        subjects[r["subject"]] = subjects.get(r["subject"], 0) + 1
    assert subjects == {
        "Algebra": 124,
        "Intermediate Algebra": 97,
        "Prealgebra": 82,
        "Number Theory": 62,
        "Precalculus": 56,
        "Geometry": 41,
        "Counting & Probability": 38,
    }


def test_sudoku_and_countdown_schema():
    for row in _records(TASKS / "sudoku" / "data" / "4x4_test_sudoku.csv"):
        assert re.fullmatch(r"[0-4]{16}", row["Puzzle"]) and re.fullmatch(r"[1-4]{16}", row["Solution"])
        assert all(p in ("0", s) for p, s in zip(row["Puzzle"], row["Solution"]))
    for row in _records(TASKS / "countdown" / "data" / "countdown_cd3_test.jsonl"):
        assert re.fullmatch(r"\d+,\d+,\d+", row["input"]) and re.fullmatch(r"\d+", row["output"])


# ------------------------------------------------------------------------------ task wiring
@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """The six tasks loaded by lm-eval from another working directory (Hydra changes it)."""
    import os

    from lm_eval.tasks import TaskManager

    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("elsewhere"))
    try:
        manager = TaskManager(include_path=[str(TASKS)])
        names = ["sudoku_d1", "sudoku_d1_full", "countdown_d1", "gsm8k_d1", "gsm8k_base", "math500_d1", "math500_base"]
        loaded = manager.load(names)["tasks"]
        for task in loaded.values():
            task.set_fewshot_seed(1234)
        yield manager, loaded
    finally:
        os.chdir(cwd)


def test_task_sizes_and_the_sudoku_and_countdown_tags(tasks):
    manager, loaded = tasks
    sizes = {name: len(task.eval_docs) for name, task in loaded.items()}
    assert sizes == {
        "sudoku_d1": 256,
        "sudoku_d1_full": 500,
        "countdown_d1": 256,
        "gsm8k_d1": 1319,
        "gsm8k_base": 1319,
        "math500_d1": 500,
        "math500_base": 500,
    }
    assert set(manager.load(["sudoku"])["tasks"]) == {"sudoku_d1"}
    assert set(manager.load(["countdown"])["tasks"]) == {"countdown_d1"}


def test_sudoku_d1_evaluates_d1s_seeded_subset(tasks):
    _, loaded = tasks
    puzzles = [r["Puzzle"] for r in _records(TASKS / "sudoku" / "data" / "4x4_test_sudoku.csv")]
    np.random.seed(42)  # what d1's eval.py does before building SudokuDataset(subsample=256)
    expected = [puzzles[i] for i in np.random.choice(len(puzzles), 256, replace=False)]
    assert [d["Puzzle"] for d in loaded["sudoku_d1"].eval_docs] == expected


def _prompt(task, doc) -> str:
    return task.fewshot_context(doc, task.config.num_fewshot or 0, gen_prefix=task.doc_to_prefix(doc))


def test_d1_prompts_are_d1s_user_turn_followed_by_the_reasoning_prefill(tasks):
    _, loaded = tasks
    sudoku = loaded["sudoku_d1"].eval_docs[0]
    text = _prompt(loaded["sudoku_d1"], sudoku)
    assert text.startswith("\nPlease solve the following 4x4 Sudoku puzzle.")
    assert text.endswith(f"</answer>\n\n\nSolve the following Sudoku puzzle: {sudoku['Puzzle']}\n<reasoning>")
    text = _prompt(loaded["countdown_d1"], loaded["countdown_d1"].eval_docs[0])
    assert "For example: \\boxed{a + b * c}Respond in the following format:\n<reasoning>" in text
    assert text.endswith("</answer>\n\nNumbers: [30, 100, 93]\nTarget: 23\n<reasoning>")
    gsm = loaded["gsm8k_d1"].eval_docs[0]
    text = _prompt(loaded["gsm8k_d1"], gsm)
    assert text.startswith("You are a math expert. You will be given a question to solve.")
    assert text.endswith("\\boxed{...}\n</answer>\n\n" + gsm["question"] + "\n<reasoning>")
    math = loaded["math500_d1"].eval_docs[0]
    assert _prompt(loaded["math500_d1"], math).endswith('</answer>" \n\n\n' + math["problem"] + "\n<reasoning>")


def test_d1_prompt_through_a_chat_template_prefills_the_assistant_turn(tasks):
    """With --apply_chat_template lm-eval sends [user: d1 prompt, assistant: "<reasoning>"] and asks
    to continue the final message: the rendered text must equal d1's
    `apply_chat_template([user], add_generation_prompt=True) + "<reasoning>"`."""
    from functools import partial

    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")))
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|eot|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    _, loaded = tasks
    task = loaded["gsm8k_d1"]
    doc = task.eval_docs[0]
    # lm-eval's HFLM.apply_chat_template, the reference behaviour for chat models
    def chat(history, add_generation_prompt=True):
        return tokenizer.apply_chat_template(
            history, tokenize=False, add_generation_prompt=add_generation_prompt, continue_final_message=not add_generation_prompt
        )

    rendered = task.fewshot_context(doc, 0, apply_chat_template=True, chat_template=chat, gen_prefix=task.doc_to_prefix(doc))
    d1 = tokenizer.apply_chat_template(
        [{"role": "user", "content": task.doc_to_text(doc)}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == d1 + "<reasoning>"


def test_base_prompts_are_the_standard_few_shot_prompts(tasks):
    _, loaded = tasks
    train = _records(TASKS / "gsm8k" / "data" / "train.jsonl")
    gsm = loaded["gsm8k_base"].eval_docs[0]
    expected = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in train[:5])
    assert _prompt(loaded["gsm8k_base"], gsm) == expected + f"Question: {gsm['question']}\nAnswer:"
    shots = _records(TASKS / "math500" / "data" / "minerva_fewshot.jsonl")
    math = loaded["math500_base"].eval_docs[0]
    expected = "".join(f"Problem:\n{s['problem']}\n\nSolution: {s['solution']}\n\n" for s in shots)
    assert _prompt(loaded["math500_base"], math) == expected + f"Problem:\n{math['problem']}\n\nSolution:"
    assert all(s["solution"].endswith("I hope it is correct.") for s in shots)


def _countdown_solution(numbers: list[int], target: int) -> str:
    """Any 3-number expression is (x o y) o z or x o (y o z) for some order: try them all."""
    for x, y, z in itertools.permutations(numbers):
        for o1, o2 in itertools.product("+-*/", repeat=2):
            for expression in (f"({x} {o1} {y}) {o2} {z}", f"{x} {o1} ({y} {o2} {z})"):
                try:
                    if abs(eval(expression) - target) < 1e-9:  # trusted, generated here
                        return expression
                except ZeroDivisionError:
                    pass
    raise AssertionError(f"no solution for {numbers} -> {target}")


_CANVAS_END = "\n</answer><|eot_id|><|endoftext|><|endoftext|>"  # the rest of a fully decoded d1 canvas


def _reference_response(name: str, doc: dict) -> str:
    if name.startswith("sudoku"):
        return f"\nok\n</reasoning>\n<answer>\n{doc['Solution']}" + _CANVAS_END
    if name == "countdown_d1":
        return "\nok\n</reasoning>\n<answer>\n\\boxed{" + _countdown_solution(doc["numbers"], doc["target"]) + "}" + _CANVAS_END
    if name == "gsm8k_base":
        return " " + doc["answer"]
    if name == "gsm8k_d1":
        return "\nok\n</reasoning>\n<answer>\n\\boxed{" + doc["answer"].split("#### ")[-1].replace(",", "") + "}" + _CANVAS_END
    if name == "math500_d1":
        return "\nok\n</reasoning>\n<answer>\n\\boxed{" + doc["answer"] + "}" + _CANVAS_END
    return f" ok.\nFinal Answer: The final answer is ${doc['answer']}$. I hope it is correct.\n\n"


def test_process_results_reports_the_declared_metrics_and_stops_are_declared(tasks):
    _, loaded = tasks
    for name, task in loaded.items():
        declared = [m["metric"] for m in task.config.metric_list]
        if name.endswith("_base"):
            assert task.config.generation_kwargs["until"], name
        else:  # d1 decodes and scores the whole canvas (no stop string), EOS/EoT ranked by confidence
            kwargs = task.config.generation_kwargs
            assert kwargs["until"] == [] and kwargs["full_canvas"] and kwargs["suppress_eos_eot"] is False, name
        # the adapter cuts text at max_gen_toks: it must not cut the protocol's longest runs
        assert task.config.generation_kwargs["max_gen_toks"] >= (1024 if name.endswith("_base") else 512), name
        for doc in list(task.eval_docs)[:3]:
            scores = task.process_results(doc, [_reference_response(name, doc)])
            assert list(scores) == declared, name
            assert all(v == 1.0 for v in scores.values()), (name, scores)


def test_hydra_task_configs_point_at_existing_tasks_and_metrics(tasks):
    import yaml

    _, loaded = tasks
    configs = sorted((REPO / "configs" / "task").glob("*.yaml"))
    mine = [p for p in configs if p.stem.split("_")[0] in {"sudoku", "countdown", "gsm8k", "math500"}]
    assert len(mine) == 11
    for path in mine:
        cfg = yaml.safe_load(path.read_text())
        assert cfg["name"] == path.stem
        task = loaded[cfg["lm_eval_task"]]
        assert cfg["primary_metric"] in [m["metric"] for m in task.config.metric_list]
        assert cfg["gen_length"] % cfg["block_length"] == 0
        if cfg["lm_eval_task"].endswith(("_d1", "_d1_full")):  # d1: block 32, two tokens per step
            assert (cfg["block_length"], cfg["steps"]) == (32, cfg["gen_length"] // 2)


# ------------------------------------------------------------------------------ generated built-in task data
GENERATED = ["tiny_addition", "tiny_sudoku", "tiny_word_problems", "tiny_addition_choice"]


@pytest.mark.parametrize("task", GENERATED)
def test_generated_task_data_has_sources_stating_its_count_checksum_and_command(task):
    path = TASKS / task / "data" / "test.jsonl"
    sources = (TASKS / task / "SOURCES.md").read_text()
    row = re.search(r"\| data/test\.jsonl \| (\d+) \| ([0-9a-f]{64}) \|", sources)
    assert row, "SOURCES.md lacks the file's row"
    assert int(row.group(1)) == len(_records(path))
    assert row.group(2) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert re.search(r"`python scripts/(train_tiny\.py \w+ --write-test-set|make_tiny_addition_choice\.py)`", sources)


@pytest.mark.parametrize("name", ["addition", "sudoku", "word_problems"])
def test_generated_tiny_test_sets_are_reproduced_byte_for_byte_by_their_generator(name):
    import json

    from boe_eval.tiny.registry import get_tiny_task

    task = get_tiny_task(name)
    written = "".join(json.dumps(doc) + "\n" for doc in task.test_set())  # as train_tiny.py --write-test-set
    assert written.encode() == (TASKS / task.name / "data" / "test.jsonl").read_bytes()
