"""Templated word problems for the built-in MDM `tiny_word_problems`: short English questions with
a numeric answer, so that text prompts, stop strings and `generate_until` are exercised on a model
that is not a digit-string puzzle solver.

Prompt `Q: Ann had 17 pens and got 25 more. How many pens now?\\nA: `, answer `42 pens.` then a
newline (the task's stop string) and EOS up to `gen_length`. One operation per question: addition,
subtraction or a product of two one-digit numbers. `correct` scores the first number of the
response against the result (GSM8K-style flexible extraction); `exact_match` the whole answer
sentence, up to the stop string.
"""

from __future__ import annotations

import random
import re

from boe_eval.tiny.task import TinyTask

NAMES = ("Ann", "Bob", "Cal", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jo")
OBJECTS = ("pen", "cup", "egg", "card", "book", "coin", "shell", "apple")
STOP = "\n"

TEMPLATES = {
    "add": "{name} had {a} {obj}s and got {b} more. How many {obj}s now?",
    "sub": "{name} had {a} {obj}s and gave away {b}. How many {obj}s now?",
    "mul": "{name} bought {a} bags of {b} {obj}s. How many {obj}s in all?",
}


def make_item(rng: random.Random, for_training: bool = False) -> dict:
    op = rng.choice(sorted(TEMPLATES))
    if op == "add":
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        result = a + b
    elif op == "sub":
        a = rng.randint(10, 99)
        b = rng.randint(1, a - 1)
        result = a - b
    else:
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        result = a * b
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    question = TEMPLATES[op].format(name=name, a=a, b=b, obj=obj)
    return {"question": question, "answer": f"{result} {obj}s.", "result": result}


def prompt(doc: dict) -> str:
    return f"Q: {doc['question']}\nA: "


def answer(doc: dict) -> str:
    """Training target: the answer sentence and the stop string."""
    return doc["answer"] + STOP


_NUMBER = re.compile(r"-?\d+")


def score(response: str, doc: dict) -> dict[str, float]:
    """`correct`: the response's first integer is the result; `exact_match`: the response (cut at
    the stop string) is the reference sentence."""
    text = response.split(STOP, 1)[0].strip()
    number = _NUMBER.search(text)
    return {
        "correct": float(number is not None and int(number.group()) == doc["result"]),
        "exact_match": float(text == doc["answer"]),
    }


TASK = TinyTask(
    name="tiny_word_problems",
    make_item=make_item,
    prompt=prompt,
    answer=answer,
    score=score,
    primary_metric="correct",
    test_seed=20261124,
    validation_seed=13,
    train_seed=5,
    until=(STOP,),
    train_overrides={"steps": 2000, "batch_size": 64, "max_positions": 96, "dropout": 0.0, "warmup": 100,
                     "cosine": True},
)
