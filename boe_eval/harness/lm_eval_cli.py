"""`boe-lm-eval`: lm-eval's own command line with this project's `boe` model registered.

lm-eval has no plugin discovery, so this imports the adapter (which runs `@register_model("boe")`)
and hands over to lm-eval's CLI unchanged.
"""

from __future__ import annotations

import os


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import boe_eval.harness.lm_adapter  # noqa: F401  (registers the `boe` model)
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()
