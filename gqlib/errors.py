"""Exceptions raised when a solve fails.

Input errors are plain ``ValueError``/``TypeError``. A failure *inside* a solve raises a
:class:`GQLibError` (a ``RuntimeError``) carrying the time reached and the step size.
"""

from __future__ import annotations

__all__ = ["GQLibError", "StepSizeTooSmall", "NonFiniteState", "TooManySteps",
           "NondeterministicField", "GradientAccuracyWarning"]


class GQLibError(RuntimeError):
    """A numerical failure inside a solve.

    Attributes
    ----------
    t : float
        Time reached when the solve failed.
    h : float
        Step size at failure.
    """

    remedy = ""

    def __init__(self, message: str, *, t: float = float("nan"), h: float = float("nan")):
        self.t = float(t)
        self.h = float(h)
        text = f"{message} (t = {self.t!r}, h = {self.h!r})"
        if self.remedy:
            text += f". {self.remedy}"
        super().__init__(text)


class StepSizeTooSmall(GQLibError):
    """The adaptive step size underflowed relative to t (stiff or singular problem)."""

    remedy = ("The problem may be stiff or have a singularity here; explicit methods are not "
              "suited to stiff problems. Loosen rtol/atol or check the vector field")


class NonFiniteState(GQLibError):
    """The state or a stage derivative became NaN or infinite."""

    remedy = "Check the vector field for overflow or a singularity, or tighten the tolerances"


class TooManySteps(GQLibError):
    """More than ``max_steps`` step attempts were made."""

    remedy = "Raise `max_steps`, loosen the tolerances, or check for stiffness"


class NondeterministicField(GQLibError):
    """An adjoint that evaluates the field again got other values than the forward pass did:
    the field is not a function of ``(t, y)`` alone, and the gradient would be wrong."""

    remedy = ("Dropout or other randomness in training mode, or state that changed since the "
              "forward pass? Remedies: direct backpropagation (adjoint=None), a field that is "
              "deterministic during the solve (model.eval(), noise drawn once per solve and "
              "passed in), or CheckpointAdjoint(keep_stages=...) large enough that the forward "
              "keeps every step's graph (stats.forward['kept_steps'])")


class GradientAccuracyWarning(UserWarning):
    """An adjoint measured a sign that its gradient may be inaccurate (and says why).

    Raised as a warning, not an error: the gradient is returned, with the measured quantity (for
    example the drift of a re-integrated state against the stored forward state), where it was
    measured, and the remedy in the message.
    """
