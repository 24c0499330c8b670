"""Stop strings and EOS: cutting a decoded text, and the EB-Sampler generate-until condition
(docs/references.md §6, §11.5): a row has stopped once its unmasked prefix contains EOS or a stop
string."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from boe_eval.decoding.canvas import Canvas
from boe_eval.decoding.meter import Meter
from boe_eval.models.denoiser import Denoiser


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    """Text before the earliest occurrence of any stop string."""
    cut = len(text)
    for stop in until:
        if stop:
            idx = text.find(stop)
            if idx != -1:
                cut = min(cut, idx)
    return text[:cut]


def generation_text(
    denoiser: Denoiser, tokens: Sequence[int], stop_on_eos: bool = True, max_tokens: int | None = None
) -> str:
    """Decode a generation region: the tokens before the first still-masked slot (and before the
    first EOS), at most `max_tokens` of them, special tokens skipped."""
    kept: list[int] = []
    for token in tokens[:max_tokens]:
        if token == denoiser.mask_id or (stop_on_eos and token == denoiser.eos_id):
            break
        kept.append(token)
    return denoiser.tokenizer.decode(kept, skip_special_tokens=True)


class StopWatcher:
    """Detects, per row, the first step at which the unmasked prefix of the generation contains EOS
    or a stop string, and the NFE spent until then."""

    def __init__(self, denoiser: Denoiser, until: Sequence[str], stop_on_eos: bool, gen_length: int, batch: int) -> None:
        self.tokenizer = denoiser.tokenizer
        self.eos_ids = {denoiser.eos_id} if (stop_on_eos and denoiser.eos_id is not None) else set()
        self.until = tuple(s for s in until if s)
        self.gen_length = gen_length
        self.met = [False] * batch
        self.nfe_at_stop: list[int | None] = [None] * batch

    def update(self, canvas: Canvas, rows: Tensor, meter: Meter) -> None:
        if not self.eos_ids and not self.until:
            return
        for row in rows.tolist():
            if self.met[row]:
                continue
            start = int(canvas.gen_start[row])
            masked = canvas.is_masked[row, start : start + self.gen_length]
            first_mask = int(masked.nonzero()[0]) if masked.any() else self.gen_length
            prefix = canvas.x[row, start : start + first_mask].tolist()
            hit = any(t in self.eos_ids for t in prefix)
            if not hit and self.until:
                text = self.tokenizer.decode(prefix, skip_special_tokens=True)
                hit = any(s in text for s in self.until)
            if hit:
                self.met[row] = True
                self.nfe_at_stop[row] = int(meter.nfe[row])


__all__ = ["StopWatcher", "cut_at_stop", "generation_text"]
