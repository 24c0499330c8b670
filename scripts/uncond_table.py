#!/usr/bin/env python
"""Write the TABES Table 4 layout (MAUVE, GenPPL, oracle GenPPL, entropy per method and budget) of an
unconditional-generation results folder to <folder>/table4.md and print it.

    python scripts/uncond_table.py results/table4_uncond_grammar
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boe_eval.analysis.uncond_table import write_uncond_table  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        raise SystemExit(2)
    path = write_uncond_table(argv[0])
    print(path.read_text(), end="")


if __name__ == "__main__":
    main()
