"""ODE integration: the stepper, step-size control, norms and the solve driver."""

from ._controller import ConstantStep, PIController
from ._solve import solve
from ._stepper import Segment, Stepper

__all__ = ["solve", "Stepper", "Segment", "PIController", "ConstantStep"]
