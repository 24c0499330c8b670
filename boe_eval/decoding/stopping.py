"""Stop strings and EOS: cutting a decoded text, and the EB-Sampler generate-until condition
(docs/references.md §6, §11.5): a row has stopped once its unmasked prefix contains EOS or a stop
string."""

from __future__ import annotations

from collections.abc import Sequence

import torch
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
    or a stop string, and the NFE spent until then.

    Work per step is proportional to what changed (issue 19): the generation regions of the watched rows
    come to the CPU in one transfer, EOS is looked for in the new tokens only, and stop strings in the
    decoded text of the new tokens plus a look-back of `look_back` non-special tokens before them (4 per
    character of the longest stop string, as a character takes at most 4 byte-level tokens, + 8 for the
    decoder's artefacts at the window's start); a hit there is confirmed on the whole prefix. The verdict is
    the whole prefix's: `stop string in decode(prefix)` (a stop string cannot lie in the part checked
    before, which did not contain one). A prefix that lost tokens (remasking) is decoded whole.
    """

    def __init__(self, denoiser: Denoiser, until: Sequence[str], stop_on_eos: bool, gen_length: int, batch: int) -> None:
        self.tokenizer = denoiser.tokenizer
        self.eos_ids = {denoiser.eos_id} if (stop_on_eos and denoiser.eos_id is not None) else set()
        self.until = tuple(s for s in until if s)
        self.gen_length = gen_length
        self.met = [False] * batch
        self.nfe_at_stop: list[int | None] = [None] * batch
        #: the unmasked prefix of each row when it was last checked
        self.checked: list[list[int]] = [[] for _ in range(batch)]
        self.look_back = 4 * max((len(s) for s in self.until), default=0) + 8
        self.special = set(getattr(self.tokenizer, "all_special_ids", None) or ())

    def update(self, canvas: Canvas, rows: Tensor, meter: Meter) -> None:
        if not self.eos_ids and not self.until:
            return
        watched = [row for row in rows.tolist() if not self.met[row]]
        if not watched:
            return
        for row, prefix in zip(watched, self._prefixes(canvas, watched)):
            if self._hit(row, prefix):
                self.met[row] = True
                self.nfe_at_stop[row] = int(meter.nfe[row])

    def _prefixes(self, canvas: Canvas, rows: list[int]) -> list[list[int]]:
        """The unmasked prefix of the generation region of each row (tokens before its first masked slot)."""
        index = torch.tensor(rows, device=canvas.x.device)
        slots = canvas.gen_start[index, None] + torch.arange(self.gen_length, device=canvas.x.device)
        tokens = canvas.x[index].gather(1, slots)
        masked = canvas.is_masked[index].gather(1, slots)
        first = torch.where(masked.any(1), masked.int().argmax(1), self.gen_length)
        tokens, first = tokens.cpu().tolist(), first.cpu().tolist()
        return [t[:n] for t, n in zip(tokens, first)]

    def _hit(self, row: int, prefix: list[int]) -> bool:
        old, self.checked[row] = self.checked[row], prefix
        same = _common_length(old, prefix)
        if any(t in self.eos_ids for t in prefix[same:]):
            return True
        if not self.until or (same == len(prefix) and same == len(old)):
            return False  # no stop strings, or nothing changed
        if same < len(old):  # tokens were taken back or replaced (remasking): the whole prefix
            return self._contains_stop(prefix)
        start, kept = same, 0
        while start > 0 and kept < self.look_back:
            start -= 1
            kept += prefix[start] not in self.special
        return self._contains_stop(prefix[start:]) and self._contains_stop(prefix)

    def _contains_stop(self, tokens: list[int]) -> bool:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return any(s in text for s in self.until)


def _common_length(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    if b[: len(a)] == a:
        return len(a)
    return next(i for i, (x, y) in enumerate(zip(a, b)) if x != y) if a[: len(b)] != b else len(b)


__all__ = ["StopWatcher", "cut_at_stop", "generation_text"]
