"""The error a user can fix: a bad input file, config, override, model folder or run folder.

Library code raises ``UserError`` (a ``ValueError``) with a message that names the file (with
the line for JSONL, the key for configs, the tensor for checkpoints) and what is wrong; the
command line prints it as one line and exits with status 2. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input the user can correct; the message names what and where."""


def one_line(message: object) -> str:
    """The message with its whitespace (newlines included) collapsed to single spaces."""
    return " ".join(str(message).split())
