"""How the entry points (the ``class-hf`` command, the recipes) report a user's mistake: one line, exit status 2.

A missing or corrupt file, a bad argument value, a failed strict validation, an unknown YAML key: the library raises
``ValueError`` / ``OSError`` (``FileNotFoundError`` ...) with a message that names the row, file or argument. An
entry point runs its work inside :func:`user_errors`, which prints that message as one line on stderr and exits with
status 2, as ``argparse`` does for a bad option. ``--debug`` (or ``CLASS_HF_DEBUG=1``) lets the exception through, with
its traceback. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence

__all__ = ["DEBUG_ENV", "USER_ERRORS", "UserError", "debug_requested", "one_line", "unknown_arguments", "user_errors"]

DEBUG_ENV = "CLASS_HF_DEBUG"
# What a user's input can cause: ValueError (bad values, bad files, failed validation; also JSONDecodeError and
# UnicodeDecodeError), OSError (missing files and folders, permissions, models that cannot be loaded) and ImportError
# (an optional extra that is not installed).
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, OSError, ImportError)
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(SystemExit):
    """The exit of an entry point after it printed a user error: status 2, ``str()`` is the message.

    A ``SystemExit``, so the interpreter exits with the status without printing anything more, and code that calls
    ``main([...])`` in-process (tests) sees the message: ``pytest.raises(SystemExit, match="...")``.
    """

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(status)
        self.message = message

    def __str__(self) -> str:
        return self.message


def debug_requested(flag: bool = False) -> bool:
    """True with ``--debug`` or when the environment variable ``CLASS_HF_DEBUG`` is set to 1/true/yes/on."""
    return bool(flag) or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def one_line(message: str) -> str:
    """The message with its line breaks (and the indentation after them) folded into single spaces."""
    return re.sub(r"\s*\n\s*", " ", str(message).strip())


def _fail(prog: str, message: str, status: int = EXIT_USAGE, hint: bool = True) -> UserError:
    line = one_line(message)
    tail = f" (--debug or {DEBUG_ENV}=1 shows the traceback)" if hint else ""
    sys.stderr.write(f"{prog}: error: {line}{tail}\n")
    sys.stderr.flush()
    return UserError(line, status)


@contextlib.contextmanager
def user_errors(prog: str, *, debug: bool = False) -> Iterator[None]:
    """Runs the block; a user error in it becomes one line on stderr and ``UserError`` (exit status 2).

    Args:
        prog (str): what the line starts with, e.g. ``"class-hf search"``.
        debug (bool): let every exception through unchanged (full traceback).

    Raises:
        UserError: for ``ValueError``, ``OSError``, ``ImportError`` and ``SystemExit("message")`` (status 2), and
            for Ctrl-C (status 130).
    """
    try:
        yield
    except UserError:
        raise
    except SystemExit as exit_:
        if debug or not isinstance(exit_.code, str):
            raise
        raise _fail(prog, exit_.code, hint=False) from None
    except KeyboardInterrupt as interrupt:  # an entry point may say more (e.g. how to resume a recipe)
        if debug:
            raise
        raise _fail(prog, str(interrupt) or "interrupted (Ctrl-C)", EXIT_INTERRUPTED, hint=False) from None
    except USER_ERRORS as err:
        if debug:
            raise
        raise _fail(prog, str(err) or type(err).__name__) from None


def unknown_arguments(extras: Sequence[str], known_options: Iterable[str]) -> str:
    """The message for arguments a parser did not recognise, with the closest known option for each typo.

    Args:
        extras (Sequence[str]): the unrecognised arguments.
        known_options (Iterable[str]): the parser's option strings (``--top-k`` ...).

    Returns:
        str: e.g. ``"unrecognized arguments: --tpo-k 3 (did you mean --top-k?)"``.
    """
    known = sorted(set(known_options))
    hints = []
    for extra in extras:
        name = extra.split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) if name.startswith("-") else []
        if close:
            hints.append((name, close[0]))
    message = "unrecognized arguments: " + " ".join(extras)
    if len(hints) == 1:
        message += f" (did you mean {hints[0][1]}?)"
    elif hints:
        message += " (did you mean " + ", ".join(f"{good} for {bad}" for bad, good in hints) + "?)"
    return message
