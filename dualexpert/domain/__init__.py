"""The domain expert: a fine-tuned encoder proposing the top-K leaf categories (paper 3.1).

The losses load torch; they are imported on first use, so that a model that predicts on ONNX
Runtime (``DomainExpert.load(folder, runtime="onnx")``) never imports it.
"""

from typing import Any

from .augment import augment, mask_path
from .expert import Candidate, DomainExpert, DomainExpertConfig

_LOSSES = ("BootstrapLoss", "FocalLoss", "TeacherLoss", "TwoPhaseLoss", "class_weights")


def __getattr__(name: str) -> Any:
    if name in _LOSSES:
        from . import losses

        return getattr(losses, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BootstrapLoss",
    "Candidate",
    "DomainExpert",
    "DomainExpertConfig",
    "FocalLoss",
    "TeacherLoss",
    "TwoPhaseLoss",
    "augment",
    "class_weights",
    "mask_path",
]
