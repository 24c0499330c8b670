"""boe-eval: a benchmark harness for the samplers of masked diffusion language models."""

__version__ = "0.1.0"
