"""What a built-in task is: a data generator, a prompt/answer format and a metric; its decoding layout
is its task config's (`configs/task/<name>.yaml`), read from there.

Every built-in task (`boe_eval.tiny.registry`) generates its own items from fixed seeds: a held-out
test set (committed as `tasks/<name>/data/test.jsonl`), a validation set (model selection) and an
endless training stream. Items are identified by their prompt: the validation set never repeats a
test prompt and the training stream never yields a test or validation prompt.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskLayout:
    gen_length: int
    steps: int
    block_length: int


@functools.lru_cache(maxsize=None)
def task_layout(name: str) -> TaskLayout:
    """(gen_length, steps, block_length) of task config `configs/task/<name>.yaml`."""
    from omegaconf import OmegaConf

    from boe_eval.errors import ConfigError
    from boe_eval.provenance import REPO_ROOT

    path = REPO_ROOT / "configs" / "task" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"built-in task {name!r} has no task config {str(path)!r}")
    cfg = OmegaConf.load(path)
    gen_length, steps = int(cfg.gen_length), int(cfg.steps)
    return TaskLayout(gen_length, steps, int(cfg.get("block_length") or gen_length))


@dataclass(frozen=True)
class TinyTask:
    name: str  #: task and model name (tasks/<name>, configs/task/<name>.yaml, builtin:<name>)
    make_item: Callable[[random.Random, bool], dict]  #: (rng, for_training) -> one item (a doc)
    prompt: Callable[[dict], str]  #: the text the model is conditioned on
    answer: Callable[[dict], str]  #: the training target (the loop appends EOS up to gen_length)
    score: Callable[[str, dict], dict[str, float]]  #: (decoded response, doc) -> metrics in [0, 1]
    primary_metric: str
    test_seed: int
    validation_seed: int
    train_seed: int
    test_size: int = 1000
    validation_size: int = 512
    until: tuple[str, ...] = ()  #: stop strings of the lm-eval task
    #: model / optimiser settings that differ from `TrainConfig`'s defaults
    train_overrides: dict = field(default_factory=dict)

    def layout(self) -> TaskLayout:
        """The task's decoding layout, read from its task config (`configs/task/<name>.yaml`, the one
        source of truth that `boe-eval task=<name>` composes)."""
        return task_layout(self.name)

    @property
    def gen_length(self) -> int:
        """Generation slots (answer + EOS padding), from the task config."""
        return self.layout().gen_length

    @property
    def steps(self) -> int:
        """Default number of decoding steps, from the task config."""
        return self.layout().steps

    def test_docs(self, limit: int | None = None) -> list[dict]:
        """The committed held-out test set (`tasks/<name>/data/test.jsonl`, first `limit` items): the
        items `boe-eval task=<name>` scores."""
        from boe_eval.harness.task_data import read_records
        from boe_eval.provenance import REPO_ROOT

        docs = read_records(REPO_ROOT / "tasks" / self.name / "data" / "test.jsonl")
        return docs[:limit] if limit else docs

    def make_split(self, seed: int, n: int, exclude: frozenset[str] | set[str] = frozenset()) -> list[dict]:
        """`n` items with distinct prompts, none in `exclude`, deterministic in `seed`."""
        rng = random.Random(seed)
        seen: dict[str, dict] = {}
        while len(seen) < n:
            item = self.make_item(rng, False)
            key = self.prompt(item)
            if key not in exclude and key not in seen:
                seen[key] = item
        return list(seen.values())

    def test_set(self) -> list[dict]:
        return self.make_split(self.test_seed, self.test_size)

    def validation_set(self, test: list[dict] | None = None) -> list[dict]:
        test = self.test_set() if test is None else test
        return self.make_split(self.validation_seed, self.validation_size, {self.prompt(d) for d in test})

    def training_stream(self, seed: int, exclude: set[str]) -> Iterator[tuple[str, str]]:
        """Endless (prompt, answer) training pairs; prompts in `exclude` are never produced."""
        rng = random.Random(seed)
        while True:
            item = self.make_item(rng, True)
            text = self.prompt(item)
            if text not in exclude:
                yield text, self.answer(item)
