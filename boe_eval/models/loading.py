"""Load a denoiser from a local directory (`from_pretrained`; never the network).

`load_denoiser(path)` inspects `config.json` and picks the wrapper: LLaDA and Dream (remote code,
`trust_remote_code=True`), MDLM, or any `AutoModelForMaskedLM` (BERT, ModernBERT, the built-in
models). Architecture wrappers register themselves in `LOADERS` keyed by `config.model_type`, or in
`ARCHITECTURE_LOADERS` keyed by an `architectures` entry where a model type is shared (LLaDA-MoE's "llada").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import torch

from boe_eval.errors import ConfigError
from boe_eval.models.denoiser import Denoiser, relative_position_encoding

#: model_type (lower case) -> loader(path, dtype, device) -> Denoiser
LOADERS: dict[str, Callable[..., Denoiser]] = {}
#: an `architectures` entry of config.json -> loader, consulted before LOADERS: for families that share a model_type
#: with another (LLaDA-MoE's config says "llada", like dense LLaDA's: boe_eval.models.llada_moe)
ARCHITECTURE_LOADERS: dict[str, Callable[..., Denoiser]] = {}
#: model_type (lower case) -> check(config.json as a dict, sampler name, gen_length, block_length), raising a one-line
#: ConfigError before any model loads when the run cannot work on that family (DiffusionGemma:
#: boe_eval.models.diffusion_gemma)
PREFLIGHT_CHECKS: dict[str, Callable[[dict, str, int, int], None]] = {}

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is unknown: choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


#: built-in checkpoints shipped with the package: `builtin:<name>` -> boe_eval/tiny/checkpoints/<name>
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "tiny" / "checkpoints"


def resolve_model_path(path: str | Path) -> Path:
    """`builtin:<name>` names a checkpoint shipped with boe-eval; anything else is a local directory."""
    text = str(path)
    if text.startswith("oracle:"):  # exact oracle denoisers (boe_eval/oracles, issue 14)
        from boe_eval.oracles import ORACLE_DIR

        name = text.split(":", 1)[1]
        target = ORACLE_DIR / name
        if not target.is_dir():
            available = sorted(p.name for p in ORACLE_DIR.glob("*") if (p / "config.json").is_file())
            raise ConfigError(f"oracle {name!r} does not exist: choose one of {', '.join(available) or 'none'}")
        return target
    if text.startswith("builtin:"):
        name = text.split(":", 1)[1]
        target = BUILTIN_DIR / name
        if not target.is_dir():
            available = sorted(p.name for p in BUILTIN_DIR.glob("*") if (p / "config.json").is_file())
            raise ConfigError(f"built-in model {name!r} does not exist: choose one of {', '.join(available) or 'none'}")
        return target
    return Path(text).expanduser()


#: the model configs, whose `path: ${oc.env:VARIABLE,default}` names where a checkpoint is looked for
MODEL_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "model"


def path_variable(path: str | Path) -> str | None:
    """The environment variable a model config reads `path` from when unset (`$LLADA_8B_INSTRUCT` for
    /models/LLaDA-8B-Instruct), or None."""
    pattern = re.compile(r"\$\{oc\.env:(\w+),([^}]*)\}")
    for config in sorted(MODEL_CONFIG_DIR.glob("*.yaml")):
        for variable, default in pattern.findall(config.read_text()):
            if default.strip() == str(path):
                return variable
    return None


def read_config(path: str | Path) -> dict:
    """The model directory's config.json, with a one-line error when it is missing or corrupt."""
    path = resolve_model_path(path)
    if not path.is_dir():
        variable = path_variable(path)
        where = f"set ${variable} to the checkpoint's directory or " if variable else ""
        raise ConfigError(
            f"model path {str(path)!r} is not a directory: give a local model directory ({where}pass model.path=<dir>)"
        )
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ConfigError(f"model path {str(path)!r} has no config.json: not a Hugging Face model directory")
    try:
        config = json.loads(cfg.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{cfg} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if "model_type" not in config and all(key in config for key in ("tokens", "graph", "noise", "model")):
        config["model_type"] = "sedd"  # SEDD's Hub config.json is its Hydra config, without a model_type
    return config


def check_model_fits_run(path: str | Path, sampler: str, gen_length: int, block_length: int) -> None:
    """Pre-flight: the family's own check of a run (sampler, layout) on the model in `path`, if it has one."""
    import boe_eval.models  # noqa: F401  (registers every family's loader and check)

    config = read_config(path)
    check = PREFLIGHT_CHECKS.get(str(config.get("model_type", "")).lower())
    if check is not None:
        check(config, sampler, int(gen_length), int(block_length))


def _load_oracle(path: str | Path, dtype: torch.dtype = torch.float64, device: str = "cpu") -> Denoiser:
    """Exact oracle denoisers (boe_eval.oracles): always float64."""
    from boe_eval.oracles.load import load_oracle

    return load_oracle(path, dtype=dtype, device=device)


LOADERS["boe_oracle"] = _load_oracle


def load_masked_lm(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Denoiser:
    """Any `AutoModelForMaskedLM` with a tokenizer that defines a mask token."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.mask_token_id is None:
        raise ConfigError(f"model at {str(path)!r} has a tokenizer without a mask token: not a masked LM")
    model = AutoModelForMaskedLM.from_pretrained(str(path), dtype=dtype).to(device)
    check_relative_positions_built(model, path)
    forbidden = [i for i in (tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.unk_token_id) if i is not None]
    # an MDLM-style MDM that, like mdlm-owt (time_conditioning: false), ignores the diffusion time it is given
    mdlm_style = bool(getattr(model.config, "boe_mdlm_style", False))
    return Denoiser(model, tokenizer, mask_id=tokenizer.mask_token_id, forbidden_ids=forbidden, name=str(path),
                    time_conditioned=mdlm_style)


def check_relative_positions_built(model, path: str | Path) -> None:
    """A BERT-style config asking for relative position encodings (`position_embedding_type` relative_key or
    relative_key_query, Shaw et al. 2018, e.g. builtin:tiny_pivot_dense) must get the attention layers' distance
    embeddings: transformers 5 dropped them from BERT and loads such a checkpoint without any position signal in
    attention (its weights left unused), which decodes garbage silently. Refused in one line instead."""
    kind = relative_position_encoding(model.config)
    if kind is None or any(hasattr(module, "distance_embedding") for module in model.modules()):
        return
    import transformers

    raise ConfigError(
        f"model at {str(path)!r} uses BERT's {kind!r} position encodings, which transformers "
        f"{transformers.__version__} does not build (it would run without them and decode garbage): run this model "
        "with transformers 4.x (pip install 'transformers>=4.56,<5')"
    )


def load_remote_code_model(
    path: str | Path, dtype: torch.dtype, device: str, auto_classes: tuple[str, ...] = ("AutoModel",)
):
    """A model whose code ships in its directory (`auto_map` in config.json), loaded with
    `trust_remote_code=True` through the first of `auto_classes` that its `auto_map` names.

    The remote code was written for transformers 4.x: the compatibility layer (boe_eval.models.compat) makes
    it load on the running version without touching the directory; a failure inside the remote code becomes
    a one-line ConfigError naming the model, the transformers version and what to do."""
    import transformers
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    from boe_eval.models.compat import (
        compatible_model_class,
        initialise_rotary_buffers,
        remote_code_compat,
        restore_config_fields,
        transformers_version,
    )

    saved = read_config(path)
    auto_map = saved.get("auto_map") or {}
    names = [name for name in auto_classes if name in auto_map]
    try:
        with remote_code_compat():
            if names:
                config = transformers.AutoConfig.from_pretrained(str(path), trust_remote_code=True)
                restore_config_fields(config, saved)
                model_class = compatible_model_class(get_class_from_dynamic_module(auto_map[names[0]], str(path)))
                model = model_class.from_pretrained(str(path), config=config, dtype=dtype)
            else:
                auto_class = getattr(transformers, auto_classes[0])
                model = auto_class.from_pretrained(str(path), dtype=dtype, trust_remote_code=True)
    except (AttributeError, KeyError, TypeError, NotImplementedError, ImportError) as err:
        if isinstance(err, ImportError) and not str(getattr(err, "name", None) or "").startswith("transformers"):
            raise  # a package the model needs is missing: load_denoiser names it
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError(
            f"the remote code of the model in {str(path)!r} does not load on transformers {transformers_version()} "
            f"({type(err).__name__}: {first}): install a version it supports "
            "(pip install 'transformers>=4.56,<5') or report the model to boe-eval"
        ) from err
    initialise_rotary_buffers(model)
    return model.to(device).eval()


def single_token_id(tokenizer, token: str) -> int | None:
    """The id of `token` when the tokenizer knows it as a single token, else None."""
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        return None
    return int(token_id)


def remote_code_mask_id(family: str, config, tokenizer, mask_token: str, default: int, vocab_size: int) -> int:
    """The mask id of a remote-code MDM (LLaDA, LLaDA2, LLaDA-MoE): config.mask_token_id, else the tokenizer's
    `mask_token`, else its mask token, else the model card's `default`; one line when it is outside the vocabulary."""
    candidates = (getattr(config, "mask_token_id", None), single_token_id(tokenizer, mask_token),
                  tokenizer.mask_token_id, default)
    mask_id = next(int(c) for c in candidates if c is not None)
    if not 0 <= mask_id < vocab_size:
        raise ConfigError(
            f"{family} mask id {mask_id} is outside the vocabulary (size {vocab_size}): set mask_token_id in config.json"
        )
    return mask_id


def load_tokenizer(path: str | Path):
    """The tokenizer saved in the model directory (its own code allowed: Dream ships one)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=True)


def load_denoiser(path: str | Path, dtype: str | torch.dtype = "float32", device: str = "cpu") -> Denoiser:
    """Load the denoiser stored in the local directory `path`. Its output must pass the load-time sanity check
    (boe_eval.models.sanity: finite logits that do not change under a no-op) or a one-line ConfigError is
    raised; `honours_padding_mask` is measured by a probe (boe_eval.models.padding_probe), whatever the
    architecture claims, and a model that fails it gets the mask injected where the probe shows that holds."""
    from safetensors import SafetensorError

    from boe_eval.models.padding_probe import settle_padding_mask
    from boe_eval.models.sanity import check_denoiser

    path = resolve_model_path(path)
    config = read_config(path)
    dtype = resolve_dtype(dtype)
    model_type = str(config.get("model_type", "")).lower()
    by_architecture = [ARCHITECTURE_LOADERS[a] for a in config.get("architectures") or () if a in ARCHITECTURE_LOADERS]
    loader = by_architecture[0] if by_architecture else LOADERS.get(model_type, load_masked_lm)
    try:
        denoiser = loader(path, dtype=dtype, device=device)
    except (OSError, ValueError, ImportError, SafetensorError) as err:
        if isinstance(err, ConfigError):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"could not load the model in {str(path)!r}: {first}") from err
    check_denoiser(denoiser)
    settle_padding_mask(denoiser)
    return denoiser
