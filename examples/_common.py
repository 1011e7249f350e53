"""Shared by the example scripts: a domain expert, loaded from a folder or trained on the demo."""

from __future__ import annotations


def domain_expert(folder: str | None = None, epochs: float = 3.0):
    """Load a saved DomainExpert, or train one on 70% of the shipped demo catalogue."""
    from dualexpert import DomainExpert
    from dualexpert.demo import split_demo

    if folder:
        return DomainExpert.load(folder)
    train, _ = split_demo()
    return DomainExpert(epochs=epochs, batch_size=16, learning_rate=2e-4).fit(train, progress=False)
