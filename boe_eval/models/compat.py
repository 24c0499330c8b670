"""Load remote-code models (LLaDA, LLaDA2, LLaDA-MoE, Dream) on the running transformers, 4.56+ and 5.x, without
editing the model directory.

LLaDA's, LLaDA2's and Dream's hub code was written against transformers 4.x. On 5.x (checked on 5.24) it breaks in
five places, each fixed here at load time, and only where the running version needs it:

- `ROPE_INIT_FUNCTIONS["default"]` is gone (Dream's rotary module looks it up in `__init__`: `KeyError`): while a
  remote-code model is built, the table gets the original RoPE frequencies θ_i = base^(-2i/d) (Su et al. 2021,
  eq. 15; transformers 4.x's `_compute_default_rope_parameters`) under "default" again;
- `PretrainedConfig` drops `use_cache`, which LLaDA's `forward` reads: put back from config.json;
- `from_pretrained` expects the attributes `post_init()` sets (`all_tied_weights_keys`, ...) and calls
  `tie_weights(missing_keys=..., recompute_mapping=...)`; LLaDA's `__init__` never calls `post_init()` and its
  `tie_weights()` takes no arguments: the model class is wrapped in a subclass that does both;
- the model is built on the meta device and non-persistent buffers are materialised *uninitialised* unless the
  model's own `_init_weights` fills them; Dream's does not, so its rotary `inv_freq` is garbage (silently wrong
  or NaN logits): every rotary module that carries its own `rope_init_fn` gets `inv_freq` recomputed;
- `transformers.modeling_attn_mask_utils` and `transformers.utils.import_utils.is_torch_fx_available` are gone
  (LLaDA2's `modeling_llada2_moe.py` imports both, LLaDA-MoE's `modeling_lladamoe.py` the first:
  `ModuleNotFoundError`): while a remote-code model is built, a module of that name provides the two mask helpers
  LLaDA2 uses and the `AttentionMaskConverter` LLaDA-MoE imports, restating 4.x's behaviour (`legacy_mask_utils`),
  and `is_torch_fx_available` answers False (the hub code then skips an optional `torch.fx.wrap`).

(Dream's config calls `rope_config_validation(self)` before `PretrainedConfig.__init__`; 5.24 accepts that, with
a FutureWarning, also with a legacy `rope_scaling` dict, so nothing is changed there.) What cannot be fixed is
caught by the load-time sanity check (`boe_eval.models.sanity`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import sys
import types
from collections.abc import Iterator

import torch
from torch import nn


def transformers_version() -> str:
    import transformers

    return transformers.__version__


def transformers_major() -> int:
    return int(transformers_version().split(".")[0])


def default_rope_parameters(config, device=None, seq_len: int | None = None, **rope_kwargs) -> tuple[torch.Tensor, float]:
    """The original RoPE inverse frequencies base^(-2i/d), i < d/2 (Su et al. 2021, eq. 15), and attention factor 1,
    computed exactly as transformers 4.x's `_compute_default_rope_parameters` (so logits match 4.x bit for bit)."""
    base = rope_kwargs.get("base") or getattr(config, "rope_theta", None)
    if base is None:
        base = (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    partial_rotary_factor = getattr(config, "partial_rotary_factor", None) or 1.0
    head_dim = rope_kwargs.get("dim") or getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    dim = int(head_dim * partial_rotary_factor)
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float) / dim
    return 1.0 / (base**exponents), 1.0


def _causal_padding_mask(attention_mask, input_shape, inputs_embeds, past_key_values_length: int) -> torch.Tensor:
    """4.x's `AttentionMaskConverter.to_4d` / `to_causal_4d`: additive [B, 1, q, kv] mask, 0 where query i may
    attend key j (j <= i + past, and the key is not padding), the dtype's minimum elsewhere."""
    batch, query_length = input_shape[0], input_shape[-1]
    key_length = query_length + past_key_values_length
    device, dtype = inputs_embeds.device, inputs_embeds.dtype
    keys, queries = torch.arange(key_length, device=device), torch.arange(query_length, device=device)
    allowed = (keys[None, :] <= queries[:, None] + past_key_values_length)[None].expand(batch, -1, -1)
    if attention_mask is not None:
        allowed = allowed & attention_mask.bool()[:, None, -key_length:].to(device)
    mask = torch.zeros((batch, 1, query_length, key_length), dtype=dtype, device=device)
    return mask.masked_fill(~allowed[:, None], torch.finfo(dtype).min)


def _prepare_4d_causal_attention_mask_for_sdpa(attention_mask, input_shape, inputs_embeds, past_key_values_length,
                                               sliding_window=None):
    """4.x behaviour outside tracing: no mask, or a 2-D mask of ones with as many keys as queries, gives None (SDPA
    then runs the module's own causality); a 4-D mask is used as given; a 2-D mask with padding becomes causal."""
    query_length = input_shape[-1]
    square = past_key_values_length == 0 or query_length == 1
    if attention_mask is None:
        return None if square else _causal_padding_mask(None, input_shape, inputs_embeds, past_key_values_length)
    if attention_mask.dim() == 4:
        return attention_mask
    if square and bool((attention_mask == 1).all()):
        return None
    return _causal_padding_mask(attention_mask, input_shape, inputs_embeds, past_key_values_length)


def _prepare_4d_causal_attention_mask(attention_mask, input_shape, inputs_embeds, past_key_values_length,
                                      sliding_window=None):
    """4.x's eager variant: always a 4-D additive mask; a 4-D 0/1 mask is inverted into one."""
    if attention_mask is not None and attention_mask.dim() == 4:
        inverted = 1.0 - attention_mask.to(inputs_embeds.dtype)
        return inverted.masked_fill(inverted.bool(), torch.finfo(inputs_embeds.dtype).min)
    return _causal_padding_mask(attention_mask, input_shape, inputs_embeds, past_key_values_length)


class AttentionMaskConverter:
    """4.x's `AttentionMaskConverter` as far as its mask builders go (`to_causal_4d`, `to_4d`: additive [B, 1, q, kv]
    masks, 0 where allowed, the dtype's minimum elsewhere). LLaDA-MoE's hub code imports the class and never calls
    it; a sliding window is not restated (NotImplementedError)."""

    def __init__(self, is_causal: bool, sliding_window: int | None = None) -> None:
        if sliding_window is not None:
            raise NotImplementedError("boe-eval's stand-in for AttentionMaskConverter has no sliding window")
        self.is_causal = is_causal
        self.sliding_window = sliding_window

    @staticmethod
    def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        return mask.masked_fill(~allowed, torch.finfo(dtype).min)

    def to_causal_4d(self, batch_size: int, query_length: int, key_value_length: int,
                     dtype: torch.dtype = torch.float32, device="cpu") -> torch.Tensor | None:
        if not self.is_causal:
            raise ValueError(f"Please use `to_causal_4d` only if {self.__class__} has `is_causal` set to True.")
        if query_length == 1:
            return None
        past = key_value_length - query_length
        keys, queries = torch.arange(key_value_length, device=device), torch.arange(query_length, device=device)
        allowed = (keys[None, :] <= queries[:, None] + past)[None, None].expand(batch_size, 1, -1, -1)
        return self._additive(allowed, dtype)

    def to_4d(self, attention_mask_2d: torch.Tensor, query_length: int, dtype: torch.dtype,
              key_value_length: int | None = None) -> torch.Tensor:
        allowed = attention_mask_2d.bool()[:, None, None, :].expand(-1, 1, query_length, -1)
        if self.is_causal and query_length > 1:
            if key_value_length is None:
                raise ValueError("This attention mask converter is causal. Make sure to pass `key_value_length`.")
            past = key_value_length - query_length
            keys = torch.arange(key_value_length, device=allowed.device)
            queries = torch.arange(query_length, device=allowed.device)
            allowed = allowed & (keys[None, :] <= queries[:, None] + past)[None, None]
        return self._additive(allowed, dtype)


def legacy_mask_utils() -> types.ModuleType:
    """A stand-in for transformers 4.x's `modeling_attn_mask_utils` with what remote code imports from it: the two
    mask helpers (LLaDA2) and `AttentionMaskConverter` (LLaDA-MoE)."""
    module = types.ModuleType("transformers.modeling_attn_mask_utils")
    module._prepare_4d_causal_attention_mask = _prepare_4d_causal_attention_mask
    module._prepare_4d_causal_attention_mask_for_sdpa = _prepare_4d_causal_attention_mask_for_sdpa
    module.AttentionMaskConverter = AttentionMaskConverter
    return module


@contextlib.contextmanager
def remote_code_compat() -> Iterator[None]:
    """While a remote-code config or model is built: the 4.x "default" RoPE init in `ROPE_INIT_FUNCTIONS`, and the
    removed `modeling_attn_mask_utils` module and `is_torch_fx_available`, all removed again on exit; on
    transformers 4.x nothing changes (they all exist)."""
    from transformers import modeling_rope_utils as rope_utils
    from transformers.utils import import_utils

    added_default = "default" not in rope_utils.ROPE_INIT_FUNCTIONS
    if added_default:
        rope_utils.ROPE_INIT_FUNCTIONS["default"] = default_rope_parameters
    mask_utils_name = "transformers.modeling_attn_mask_utils"
    added_mask_utils = mask_utils_name not in sys.modules and importlib.util.find_spec(mask_utils_name) is None
    if added_mask_utils:
        sys.modules[mask_utils_name] = legacy_mask_utils()
    added_fx = not hasattr(import_utils, "is_torch_fx_available")
    if added_fx:
        import_utils.is_torch_fx_available = lambda: False
    try:
        yield
    finally:
        if added_default:
            rope_utils.ROPE_INIT_FUNCTIONS.pop("default", None)
        if added_mask_utils:
            sys.modules.pop(mask_utils_name, None)
        if added_fx:
            del import_utils.is_torch_fx_available


def _tie_weights_takes_arguments(method) -> bool:
    parameters = inspect.signature(method).parameters.values()
    return any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in parameters) or len(parameters) > 1


def compatible_model_class(cls: type) -> type:
    """`cls` itself on transformers 4.x; on 5.x a subclass of the same name whose `__init__` ends with the
    `post_init()` that 5.x's `from_pretrained` relies on (when the remote code's does not call it) and whose
    `tie_weights` accepts 5.x's keyword arguments (the remote code's takes none)."""
    if transformers_major() < 5:
        return cls
    namespace: dict = {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}

    def __init__(self, config, *args, **kwargs):
        cls.__init__(self, config, *args, **kwargs)
        if not hasattr(self, "all_tied_weights_keys"):
            self.post_init()

    namespace["__init__"] = __init__
    if not _tie_weights_takes_arguments(cls.tie_weights):

        def tie_weights(self, *args, **kwargs):
            return cls.tie_weights(self)

        namespace["tie_weights"] = tie_weights
    return type(cls.__name__, (cls,), namespace)


def restore_config_fields(config, saved: dict) -> None:
    """Put back `use_cache`, which 5.x's `PretrainedConfig.__init__` no longer keeps as an attribute while
    LLaDA's `forward` reads `config.use_cache` whenever the caller passes no `use_cache` (value from config.json,
    else False: a diffusion model keeps no cache)."""
    try:
        getattr(config, "use_cache")
    except AttributeError:
        config.use_cache = bool(saved.get("use_cache", False))


@torch.no_grad()
def initialise_rotary_buffers(model: nn.Module) -> int:
    """Recompute `inv_freq` of every rotary module that carries its own `rope_init_fn` and `config` (the 4.x
    Llama-style rotary module that Dream copied), where it differs from what that function gives; returns how
    many were rewritten. A correct buffer is left untouched, so on 4.x this changes nothing."""
    rewritten = 0
    for module in model.modules():
        init_fn, config = getattr(module, "rope_init_fn", None), getattr(module, "config", None)
        buffer = getattr(module, "inv_freq", None)
        if init_fn is None or config is None or not isinstance(buffer, torch.Tensor):
            continue
        inv_freq, scaling = init_fn(config, buffer.device, **getattr(module, "rope_kwargs", {}))
        inv_freq = inv_freq.to(device=buffer.device, dtype=buffer.dtype)
        if buffer.shape == inv_freq.shape and torch.equal(buffer, inv_freq):
            continue
        module.register_buffer("inv_freq", inv_freq, persistent=False)
        if hasattr(module, "original_inv_freq"):
            module.original_inv_freq = module.inv_freq
        if hasattr(module, "attention_scaling"):
            module.attention_scaling = scaling
        rewritten += 1
    return rewritten


__all__ = [
    "AttentionMaskConverter",
    "compatible_model_class",
    "default_rope_parameters",
    "legacy_mask_utils",
    "initialise_rotary_buffers",
    "remote_code_compat",
    "restore_config_fields",
    "transformers_major",
    "transformers_version",
]
