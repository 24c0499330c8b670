"""`boe-lm-eval`: lm-eval's own command line with this project's `boe` model registered.

lm-eval has no plugin discovery, so this imports the adapter (which runs `@register_model("boe")`)
and hands over to lm-eval's CLI. One addition: `lm_eval.simple_evaluate` (which the CLI calls) is
wrapped so that with `--log_samples` every logged sample carries its generation's compute as
`"compute": {"nfe": ..., "forwards": ..., "backwards": ..., "forward_equivalents": ...,
"tokens_processed": ..., "wall_time_s": ..., ...}` (`boe_eval.harness.lm_adapter.attach_compute`).
"""

from __future__ import annotations

import os


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import lm_eval

    from boe_eval.harness.lm_adapter import with_compute_in_samples  # (also registers the `boe` model)

    lm_eval.simple_evaluate = with_compute_in_samples(lm_eval.simple_evaluate)
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
