"""Scale-out of ``classify`` on Ray Data (the optional extra ``dualexpert[ray]``).

The same two stages as :mod:`dualexpert.batch` run as ``map_batches`` stages: the domain expert
on an actor pool (one model load per actor), then the routed rows on the general expert with a
global cap on LLM requests in flight.
"""

from .ray_data import classify_dataset, classify_file, require_ray

__all__ = ["classify_dataset", "classify_file", "require_ray"]
