"""Pre-flight check that every prompt of a job fits the model: prompt + gen_length must not exceed the model's
position table, which `boe_eval.decoding.canvas.check_prompts` otherwise refuses only after the model has loaded
and decoding has started."""

from __future__ import annotations

from typing import Any

from boe_eval.errors import ConfigError

#: config.json keys of a model's position limit, in the order `Denoiser.max_length` reads them
POSITION_KEYS = ("max_position_embeddings", "max_sequence_length", "n_positions")
#: special tokens a tokenizer may add around a text (BOS/CLS, SEP/EOS, ...), a safe upper bound
SPECIAL_TOKENS_BOUND = 8


def position_limit(config: dict) -> int | None:
    """The longest canvas the model accepts, as `Denoiser.max_length` reads it from the model's config."""
    for key in POSITION_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def job_prompts(spec: Any) -> list[str]:
    """The generation prompts of one cell, as lm-eval builds its requests (few-shot context included; with the
    chat template when the cell applies it)."""
    from boe_eval.harness.task_index import task_manager_for

    loaded = task_manager_for(spec.lm_eval_task, tuple(spec.include_paths)).load([spec.lm_eval_task])
    prompts: list[str] = []
    tokenizer = None
    for task in loaded.get("tasks", {}).values():
        if getattr(task, "OUTPUT_TYPE", None) != "generate_until":
            continue  # log-likelihood requests fit their window themselves (boe_eval.harness.likelihood)
        template = None
        if spec.apply_chat_template:
            from boe_eval.models.loading import load_tokenizer, resolve_model_path

            tokenizer = tokenizer or load_tokenizer(resolve_model_path(spec.model_path))

            def template(history, add_generation_prompt=True, _tok=tokenizer):  # as BoeLM.apply_chat_template
                return _tok.apply_chat_template(history, tokenize=False, add_generation_prompt=add_generation_prompt,
                                                continue_final_message=not add_generation_prompt)

        task.build_all_requests(limit=spec.limit, apply_chat_template=bool(spec.apply_chat_template),
                                chat_template=template)
        prompts.extend(str(instance.args[0]) for instance in task.instances)
    return prompts


def check_prompt_lengths(spec: Any) -> None:
    """Refuse, before the model loads, a cell whose longest prompt + gen_length exceeds the model's positions.
    Prompts are tokenized only when their UTF-8 length could exceed the room left (a tokenizer makes at most
    one token per byte, plus its special tokens), so a model with room to spare loads no tokenizer here."""
    from boe_eval.models.loading import load_tokenizer, read_config, resolve_model_path

    limit = position_limit(read_config(spec.model_path))
    if limit is None:
        return
    room = limit - spec.gen_length
    if room < 1:
        raise ConfigError(f"gen_length={spec.gen_length} leaves no room for a prompt in the {limit} positions "
                          f"model.path={spec.model_path} accepts: use gen_length < {limit} or another model")
    prompts = job_prompts(spec)
    if not prompts or max(len(p.encode()) for p in prompts) + SPECIAL_TOKENS_BOUND <= room:
        return
    tokenizer = load_tokenizer(resolve_model_path(spec.model_path))
    eos = getattr(tokenizer, "eos_token_id", None)
    longest, where = 0, 0
    for i, prompt in enumerate(prompts):
        ids = tokenizer(prompt, add_special_tokens=True).input_ids
        while ids and eos is not None and ids[-1] == eos and len(ids) > 1:  # as BoeLM._encode
            ids = ids[:-1]
        if len(ids) > longest:
            longest, where = len(ids), i
    if longest > room:
        raise ConfigError(
            f"prompt {where} of task {spec.lm_eval_task} has {longest} tokens: with gen_length={spec.gen_length} "
            f"that is {longest + spec.gen_length} positions, more than the {limit} model.path={spec.model_path} "
            f"accepts: use gen_length <= {limit - longest}, a limit= that leaves the long prompts out, or another model"
        )


__all__ = ["check_prompt_lengths", "job_prompts", "position_limit"]
