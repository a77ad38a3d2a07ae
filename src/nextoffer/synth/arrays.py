"""The numpy array types every module of the synthetic world passes around, and codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BoolA = npt.NDArray[np.bool_]

T = TypeVar("T")


def codes(vocabulary: Sequence[T], *members: T) -> tuple[int, ...]:
    """The positions of `members` in `vocabulary`: the integer codes the arrays hold."""
    return tuple(vocabulary.index(m) for m in members)
