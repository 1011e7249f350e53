"""The domain expert: a fine-tuned encoder proposing the top-K leaf categories (paper 3.1)."""

from .augment import augment, mask_path
from .expert import Candidate, DomainExpert, DomainExpertConfig
from .losses import BootstrapLoss, FocalLoss, TwoPhaseLoss, class_weights

__all__ = [
    "BootstrapLoss",
    "Candidate",
    "DomainExpert",
    "DomainExpertConfig",
    "FocalLoss",
    "TwoPhaseLoss",
    "augment",
    "class_weights",
    "mask_path",
]
