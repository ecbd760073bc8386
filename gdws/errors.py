"""A run refused for a reason its user can act on: the message says it all, so run.py prints it alone.

The project's own checks raise these: a bad config value, a shrunk run labelled paper, missing or unusable data
or weights, a CPU training estimated to take days. Each kind also derives from the built-in error a library
caller would catch (ValueError, FileNotFoundError, RuntimeError), so code that uses gdws directly sees no change.
Any other exception reaching run.py is a bug and keeps its traceback. Imports nothing.
"""
from __future__ import annotations


class Refusal(Exception):
    """A refused run: ``str(err)`` says what is wrong and what to do instead."""


class BadValue(Refusal, ValueError):
    """A setting the run cannot use (a value out of range, a shrunk run labelled paper, ...)."""


class MissingInput(Refusal, FileNotFoundError):
    """Data or weights that are not where the config says."""


class CannotRun(Refusal, RuntimeError):
    """An input or a setting that would make the run fail or take too long (unreadable weights, days of training)."""


#: The built-in error each refusal kind stands for, most specific first.
KINDS = ((FileNotFoundError, MissingInput), (ValueError, BadValue), (RuntimeError, CannotRun))


def as_refusal(err: Exception) -> Refusal:
    """``err``, raised by one of the project's checks, as the refusal of its kind (same message)."""
    for base, kind in KINDS:
        if isinstance(err, base):
            return err if isinstance(err, kind) else kind(str(err))
    raise TypeError(f"no refusal kind for {type(err).__name__}: {err}")


def refusal_in(err: BaseException | None) -> Refusal | None:
    """The refusal ``err`` is, or was raised from (``raise ... from``, as Hydra's instantiate wraps what a
    constructor raised); None when it is any other error."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, Refusal):
            return err
        seen.add(id(err))
        err = err.__cause__
    return None
