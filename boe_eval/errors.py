"""The user-facing error type, in a module that imports nothing heavy (so `boe-eval --help` needs no torch)."""


class ConfigError(ValueError):
    """A bad user-facing setting; the message names the field, the value and what is allowed."""


__all__ = ["ConfigError"]
