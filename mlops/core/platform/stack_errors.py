"""Why the native stack's ``up`` refuses or fails: :class:`StackError` and the refusals it tells apart."""

from __future__ import annotations


class StackError(RuntimeError):
    """``up`` refused or failed; the message says why and what to do."""


class PortTaken(StackError):
    """A port the stack needs is in use by something else."""


class ServedModelMismatch(StackError):
    """The predictor would serve a model that is not the champion of the registry the stack runs."""
