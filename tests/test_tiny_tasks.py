"""Built-in tasks beside Sudoku (tiny_addition, tiny_word_problems, tiny_pivot): generators, held-out splits,
metrics on gold and corrupted answers, the registry, training batches and the lm-eval wiring."""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

import pytest
import torch

from boe_eval.errors import ConfigError
from boe_eval.models.compat import transformers_major
from boe_eval.tiny import addition, word_problems
from boe_eval.tiny.registry import TINY_TASKS, get_tiny_task
from boe_eval.tiny.tokenizer import build_char_tokenizer
from boe_eval.tiny.training import encode_pairs, mdm_loss

REPO = Path(__file__).resolve().parents[1]
NEW_TASKS = ("tiny_addition", "tiny_word_problems", "tiny_pivot", "tiny_chain", "tiny_pivot_dense", "tiny_shell")


def committed(name: str) -> list[dict]:
    return [json.loads(line) for line in (REPO / "tasks" / name / "data" / "test.jsonl").read_text().splitlines()]


def column_sum(a: str, b: str) -> str:
    """Schoolbook addition, right to left with an explicit carry (independent of `addition.total`)."""
    digits, carry = [], 0
    for x, y in zip(reversed(a), reversed(b)):
        s = int(x) + int(y) + carry
        digits.append(str(s % 10))
        carry = s // 10
    digits.append(str(carry))
    return "".join(reversed(digits))


@pytest.mark.parametrize("name", NEW_TASKS)
def test_committed_test_set_is_the_generated_one_and_held_out(name):
    task = get_tiny_task(name)
    docs = committed(name)
    assert len(docs) == task.test_size >= 500
    assert docs == task.test_set() == task.make_split(task.test_seed, task.test_size)  # regenerated, byte for byte
    prompts = {task.prompt(d) for d in docs}
    assert len(prompts) == len(docs)
    validation = task.validation_set(docs)
    assert len(validation) == task.validation_size and not prompts & {task.prompt(d) for d in validation}
    # the training stream never yields a held-out prompt, and a different seed gives other items
    stream = task.training_stream(task.train_seed, exclude=prompts)
    drawn = [p for p, _ in itertools.islice(stream, 3000)]
    assert not prompts & set(drawn)
    assert drawn[:50] != [task.prompt(d) for d in docs[:50]]
    again = [p for p, _ in itertools.islice(task.training_stream(task.train_seed, exclude=prompts), 3000)]
    other = [p for p, _ in itertools.islice(task.training_stream(task.train_seed + 1, exclude=prompts), 3000)]
    assert again == drawn and other != drawn  # deterministic per seed


def test_excluded_prompts_are_skipped_by_the_training_stream():
    task = get_tiny_task("tiny_word_problems")  # small item space: repeats occur within a few thousand draws
    first = [p for p, _ in itertools.islice(task.training_stream(0, exclude=set()), 2000)]
    common = {p for p in first if first.count(p) > 1}
    assert common, "expected repeated prompts in 2000 draws"
    filtered = [p for p, _ in itertools.islice(task.training_stream(0, exclude=common), 2000)]
    assert not common & set(filtered)


def test_addition_answers_are_the_column_sums_and_carry_chains_are_common():
    docs = committed("tiny_addition")
    for d in docs:
        assert len(d["a"]) == len(d["b"]) == addition.DIGITS
        assert d["answer"] == column_sum(d["a"], d["b"]) == str(int(d["a"]) + int(d["b"])).zfill(addition.DIGITS + 1)
        assert addition.prompt(d) == f"{d['a']}+{d['b']}="
    columns = [(int(x), int(y)) for d in docs for x, y in zip(d["a"], d["b"])]
    nines = sum(x + y == 9 for x, y in columns) / len(columns)
    expected = addition.PROPAGATE_PROB + (1 - addition.PROPAGATE_PROB) * 0.1
    assert abs(nines - expected) < 0.02
    assert sum(addition.carry_chain_length(d["a"], d["b"]) >= 3 for d in docs) > 0.2 * len(docs)


def test_addition_metric_gold_one_corrupted_zero():
    for d in committed("tiny_addition")[:300]:
        gold = d["answer"]
        assert addition.score(gold, d) == {"exact_match": 1.0, "digit_accuracy": 1.0}
        assert addition.score(f" {gold}\n", d)["exact_match"] == 1.0
        i = random.Random(gold).randrange(len(gold))
        wrong = gold[:i] + str((int(gold[i]) + 1) % 10) + gold[i + 1 :]
        out = addition.score(wrong, d)
        assert out["exact_match"] == 0.0 and out["digit_accuracy"] == pytest.approx(1 - 1 / len(gold))
        assert addition.score(gold[:-1], d)["exact_match"] == 0.0
        assert addition.score("", d) == {"exact_match": 0.0, "digit_accuracy": 0.0}


def test_word_problem_answers_follow_the_question():
    for d in committed("tiny_word_problems"):
        a, b = (int(n) for n in re.findall(r"\d+", d["question"]))
        if "got" in d["question"]:
            assert d["result"] == a + b
        elif "gave away" in d["question"]:
            assert d["result"] == a - b > 0
        else:
            assert "bags of" in d["question"] and d["result"] == a * b
        obj = re.search(r"How many (\w+)", d["question"]).group(1)
        assert d["answer"] == f"{d['result']} {obj}."
        assert len(word_problems.answer(d)) < word_problems.TASK.gen_length  # room for EOS


def test_word_problem_metric_gold_one_corrupted_zero():
    for d in committed("tiny_word_problems")[:300]:
        assert word_problems.score(d["answer"], d) == {"correct": 1.0, "exact_match": 1.0}
        # what the loop returns before the stop string is cut, and a response that goes on after it
        assert word_problems.score(d["answer"] + "\nQ: more", d) == {"correct": 1.0, "exact_match": 1.0}
        wrong = d["answer"].replace(str(d["result"]), str(d["result"] + 1), 1)
        assert word_problems.score(wrong, d) == {"correct": 0.0, "exact_match": 0.0}
        assert word_problems.score(d["answer"][:-1], d) == {"correct": 1.0, "exact_match": 0.0}
        assert word_problems.score("", d) == {"correct": 0.0, "exact_match": 0.0}


def test_registry_names_and_bad_name():
    assert set(NEW_TASKS) | {"tiny_sudoku"} <= set(TINY_TASKS)
    assert get_tiny_task("addition") is get_tiny_task("tiny_addition")
    with pytest.raises(ConfigError, match="'nope' does not exist: choose one of .*tiny_addition"):
        get_tiny_task("nope")


def test_training_batch_pads_answers_with_eos_and_masks_only_generation_slots():
    tok = build_char_tokenizer()
    pairs = [("Q: ab\nA: ", "7 pens.\n"), ("Q: a\nA: ", "12 cups.\n")]
    batch = encode_pairs(tok, pairs, gen_length=12)
    assert batch.input_ids.shape == (2, 9 + 12)
    row0 = batch.input_ids[0].tolist()
    assert tok.decode(row0[:9]) == "Q: ab\nA: " and tok.decode(row0[9:17]) == "7 pens.\n"
    assert row0[17:21] == [tok.eos_token_id] * 4
    row1 = batch.input_ids[1].tolist()  # one character shorter prompt: right-padded with PAD
    assert row1[8 + 9 : 8 + 12] == [tok.eos_token_id] * 3 and row1[-1] == tok.pad_token_id
    assert batch.attention_mask[1].tolist() == [1] * 20 + [0]
    assert batch.gen_positions[1].tolist() == list(range(8, 20))
    with pytest.raises(ValueError, match="does not fit gen_length=4"):
        encode_pairs(tok, pairs, gen_length=4)

    # the loss only ever masks generation slots: record what the model sees
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None):
            seen.append(input_ids.clone())
            logits = torch.zeros(*input_ids.shape, len(tok))
            return type("Out", (), {"logits": logits})()

    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        loss = mdm_loss(Probe(), batch, tok.mask_token_id, gen, 1e-3)
        assert torch.isfinite(loss)
    masked = torch.stack([s == tok.mask_token_id for s in seen])  # [20, 2, W]
    gen_slots = torch.zeros_like(masked[0])
    gen_slots.scatter_(1, batch.gen_positions, True)
    assert masked.any() and not (masked & ~gen_slots).any()


def test_mdm_loss_of_uniform_predictions_is_log_vocab():
    """With uniform logits every masked slot costs log|V|; E[1/t * #masked/G] = 1, so the mean
    loss over many draws is log|V|."""
    tok = build_char_tokenizer()
    batch = encode_pairs(tok, [("1+2=", "03")] * 4000, gen_length=3)

    class Uniform(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None):
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, len(tok))})()

    loss = mdm_loss(Uniform(), batch, tok.mask_token_id, torch.Generator().manual_seed(1), 1e-3)
    assert float(loss) == pytest.approx(torch.log(torch.tensor(float(len(tok)))).item(), rel=0.1)


@pytest.mark.parametrize("name", NEW_TASKS)
def test_lm_eval_task_scores_gold_targets_one(name):
    from boe_eval.harness.task_index import task_manager

    manager = task_manager(())
    task_obj = manager.load_task_or_group([name])[name]
    docs = list(task_obj.test_docs())
    assert len(docs) == len(committed(name))
    module = get_tiny_task(name)
    for doc in docs[:100]:
        assert task_obj.doc_to_text(doc) == module.prompt(doc)
        target = task_obj.doc_to_target(doc)
        scores = task_obj.process_results(doc, [target])
        assert scores[module.primary_metric] == 1.0
        assert task_obj.process_results(doc, ["x"])[module.primary_metric] == 0.0
    assert list(task_obj.config.generation_kwargs["until"]) == list(module.until)


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.skipif(
        name == "tiny_pivot_dense" and transformers_major() >= 5,
        reason="transformers 5 does not build BERT's relative positions (the loader refuses the model)"))
    for name in NEW_TASKS])
def test_training_script_trains_a_few_steps_and_the_checkpoint_decodes(tmp_path, name):
    """`scripts/train_tiny.py <task> --steps 5` writes a loadable checkpoint and its training record;
    the checkpoint then runs through the decoding loop on the task's held-out items."""
    import subprocess
    import sys

    out = tmp_path / "ckpt"
    short = name.removeprefix("tiny_")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "train_tiny.py"), short, "--steps", "5",
                           "--batch-size", "8", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads((out / "training.json").read_text())
    assert info["step"] == 5 and info["val_loss"] > 0 and info["config"]["steps"] == 5
    assert info["command"].startswith(f"python scripts/train_tiny.py {short}")
    assert [h["step"] for h in info["history"]] == [5]
    from hydra import compose, initialize_config_dir

    from boe_eval.harness.evaluate import evaluate_cell
    from boe_eval.harness.specs import build_specs
    from boe_eval.models import load_denoiser

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):  # through the harness
        cfg = compose(config_name="config", overrides=["model=tiny_addition", f"model.path={out}", f"task={name}",
                                                       "sampler=confidence", "limit=4", "batch_size=4"])
    [(spec, sampler)] = build_specs(cfg)
    task = get_tiny_task(name)
    assert (spec.gen_length, spec.steps) == (task.gen_length, task.steps)
    rows = evaluate_cell(spec, load_denoiser(out), sampler, progress=False)
    summary = rows[-1]
    assert summary["n_examples"] == 4 and 0.0 <= summary["score"] <= 1.0
    assert summary["primary_metric"] == task.primary_metric


def shipped_models() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "boe_eval" / "tiny" / "checkpoints").glob("*/model.safetensors"))


# (tiny_grammar is trained by scripts/train_tiny_grammar.py and checked in tests/test_uncond.py)
@pytest.mark.parametrize("name", [n for n in shipped_models() if n in TINY_TASKS and n != "tiny_sudoku"])
def test_shipped_checkpoint_is_small_documented_and_trained_by_the_task_recipe(name):
    """Every shipped model is <= 10 MB, has a model card, and its training record is the task's own
    recipe (so `scripts/train_tiny.py <task>` retrains it) on a task the registry knows."""
    folder = REPO / "boe_eval" / "tiny" / "checkpoints" / name
    task = get_tiny_task(name)
    assert (folder / "model.safetensors").stat().st_size <= 10 * 2**20
    card = (folder / "README.md").read_text()
    assert f"scripts/train_tiny.py {name.removeprefix('tiny_')}" in card and "95% CI" in card
    info = json.loads((folder / "training.json").read_text())
    for key, value in task.train_overrides.items():
        assert info["config"][key] == value, key
    assert info["config"]["seed"] == 0 and info["step"] <= info["config"]["steps"]


def test_a_longer_schedule_stopped_early_is_the_prefix_of_the_longer_run():
    from boe_eval.tiny.training import TrainConfig, learning_rate

    short = TrainConfig(steps=1000, schedule_steps=2000, warmup=100, cosine=True)
    full = TrainConfig(steps=2000, warmup=100, cosine=True)
    assert [learning_rate(s, short) for s in range(1, 1001)] == [learning_rate(s, full) for s in range(1, 1001)]
    assert learning_rate(50, full) == pytest.approx(0.5e-3) and learning_rate(2000, full) == pytest.approx(1e-4)
    assert learning_rate(1000, TrainConfig(steps=1000, warmup=100, cosine=True)) == pytest.approx(1e-4)


@pytest.mark.parametrize("name", sorted(TINY_TASKS))
def test_a_built_in_tasks_layout_has_one_source_its_task_config(name):
    """The decoding layout Python uses for a built-in task (training canvas, benchmarks) is the one
    `boe-eval task=<name>` composes (configs/task/<name>.yaml); lm-eval's task YAML, which cannot read
    it, caps generation at the same length."""
    import yaml

    task = get_tiny_task(name)
    config = yaml.safe_load((REPO / "configs" / "task" / f"{name}.yaml").read_text())
    assert (task.gen_length, task.steps, task.layout().block_length) == (
        config["gen_length"], config["steps"], config.get("block_length") or config["gen_length"])
    lm_eval_yaml = yaml.safe_load((REPO / "tasks" / name / f"{name}.yaml").read_text().replace("!function", ""))
    assert lm_eval_yaml["generation_kwargs"]["max_gen_toks"] == task.gen_length
    assert max(len(task.answer(d)) for d in task.test_docs()) <= task.gen_length  # the answer fits the canvas
