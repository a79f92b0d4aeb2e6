"""Error types shared by every stage. Each message names the file/line/argument at fault."""

from __future__ import annotations


class MochaError(Exception):
    """Base class: the CLI prints the message (no traceback) and exits non-zero."""


class DataError(MochaError):
    """Bad dataset input: malformed label line, bad box, unknown class, unreadable image, ..."""


class ConfigError(MochaError):
    """Bad argument, missing weights, mismatched artifacts (checkpoint/PCA/store dimensions)."""
