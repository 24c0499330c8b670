"""Registry-driven contract tests (like diffusers' SchedulerCommonTest): every registered sampler, with its
default parameters, is checked for the loop's decision rules, batch invariance, determinism under a seed, its
declared cost (`Sampler.knob`) against the meter, and its config defaults against its YAML. A new sampler gets
these tests by registering."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml

import boe_eval.samplers  # noqa: F401  (registers every sampler module)
from boe_eval.decoding import DecodeConfig, generate
from boe_eval.models.loading import load_denoiser
from boe_eval.samplers.base import SAMPLERS, build_sampler
from boe_eval.samplers.cost import VaryingStepCost

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "sampler"
NAMES = sorted(SAMPLERS)


@pytest.fixture(scope="module")
def models():
    """The built-in addition model (any sampler), and an exact oracle for the samplers that need the diffusion
    time (the oracles accept it)."""
    return {"builtin": load_denoiser("builtin:tiny_addition"), "oracle": load_denoiser("oracle:sudoku4")}


def _setting(name: str, models) -> tuple:
    if SAMPLERS[name][0].needs_time_conditioning:
        model = models["oracle"]
        texts = ["....4....3.22..1|", ".14........1.23.|", "....2..4..3...41|"]
        config = DecodeConfig(gen_length=16, steps=8, block_length=16)
    else:
        model = models["builtin"]
        texts = ["1234567890+0987654321=", "5555555555+4444444445=", "1000000000+9000000000="]
        config = DecodeConfig(gen_length=12, steps=6, block_length=12)
    prompts = [model.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return model, prompts, config


def _decode(name: str, models, batch: list[int] | None = None, seeds=(11, 22, 33)):
    model, prompts, config = _setting(name, models)
    idx = list(range(len(prompts))) if batch is None else batch
    return generate(model, [prompts[i] for i in idx], build_sampler(name), config, [seeds[i] for i in idx])


@pytest.mark.parametrize("name", NAMES)
def test_every_registered_sampler_declares_its_cost_and_knob(name):
    cls = SAMPLERS[name][0]
    assert cls.knob is not None, f"sampler {name!r} declares no knob (boe_eval/samplers/README.md)"
    cost = cls.knob.step_cost(build_sampler(name).params())
    assert isinstance(cost, VaryingStepCost) or cost.nfe >= 1


@pytest.mark.parametrize("name", NAMES)
def test_decisions_follow_the_rules_and_fill_the_canvas(name, models):
    """The loop raises on a decision that breaks a rule; at the end no slot is left masked."""
    model, _, config = _setting(name, models)
    for result in _decode(name, models):
        assert model.mask_id not in result.tokens and len(result.tokens) == config.gen_length


@pytest.mark.parametrize("name", NAMES)
def test_batch_composition_does_not_change_a_sequence(name, models):
    together = _decode(name, models)
    for i in range(len(together)):
        (alone,) = _decode(name, models, batch=[i])
        assert alone.tokens == together[i].tokens
        assert (alone.nfe, alone.forwards, alone.backwards) == (together[i].nfe, together[i].forwards, together[i].backwards)


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_gives_the_same_decode(name, models):
    first, second = _decode(name, models), _decode(name, models)
    assert [r.tokens for r in first] == [r.tokens for r in second]
    assert [r.nfe for r in first] == [r.nfe for r in second]


@pytest.mark.parametrize("name", NAMES)
def test_declared_step_cost_equals_the_meter(name, models):
    """A fixed-horizon sampler spends exactly steps x its declared cost; one that may finish early or adapts its
    steps spends, per step it ran, what it declares at most (it is then placed at its measured compute)."""
    cls = SAMPLERS[name][0]
    cost = cls.knob.step_cost(build_sampler(name).params())
    if isinstance(cost, VaryingStepCost):
        pytest.skip("cost varies from step to step (|C_t| look-ahead forwards): checked in its own test file")
    _, _, config = _setting(name, models)
    forwards = cost.nfe if cost.forwards is None else cost.forwards
    for result in _decode(name, models):
        if cls.knob.adaptive or cls.knob.early_exit:
            assert result.nfe <= config.gen_length * cost.nfe + 1e-9 and result.nfe >= 1
            assert result.backwards <= config.gen_length * cost.backwards + 1e-9
        else:
            extra = result.nfe - config.steps * cost.nfe  # the final argmax call, if the sampler declares one
            assert extra == 0 or (cls.knob.final_call and extra == 1)
            assert (result.nfe, result.forwards, result.backwards) == (
                config.steps * cost.nfe + extra, config.steps * forwards + extra, config.steps * cost.backwards)


def _yaml_params(name: str) -> dict | None:
    path = CONFIGS / f"{name}.yaml"
    if not path.exists():
        return None
    data = yaml.safe_load(path.read_text())
    assert data.get("name") == name and not data.get("defaults"), f"{path.name} is not {name}'s own config"
    return data.get("params") or {}


@pytest.mark.parametrize("name", NAMES)
def test_config_defaults_equal_the_yaml(name):
    params = _yaml_params(name)
    if params is None:
        pytest.skip(f"no configs/sampler/{name}.yaml")
    defaults = {f.name: f.default for f in dataclasses.fields(SAMPLERS[name][1]) if f.default is not dataclasses.MISSING}
    unknown = sorted(set(params) - set(defaults))
    assert unknown == [], f"{name}.yaml sets parameters the sampler does not have: {unknown}"
    differ = {k: (v, defaults[k]) for k, v in params.items()
              if not (v == defaults[k] or (isinstance(v, float) and math.isclose(v, defaults[k])))}
    assert differ == {}, f"{name}.yaml and the config dataclass disagree (yaml, dataclass): {differ}"
