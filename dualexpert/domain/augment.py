"""Label augmentation (paper section 3.1.1, Figure 2).

Synthetic training samples whose text is the category path with random branches masked,
so that the encoder sees label names, which helps few-shot and zero-shot leaves.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..data import Product
from ..taxonomy import PATH_SEP, Taxonomy

MASK = "[MASK]"


def mask_path(names: Sequence[str], rng: random.Random, p_mask: float = 0.5) -> str:
    """Join the names root-first, replacing each non-leaf level by ``[MASK]`` with ``p_mask``.

    The leaf is masked only when the path has more than one level and then with half the
    probability, so the sample always keeps some label text.
    """
    out = []
    n = len(names)
    for i, name in enumerate(names):
        p = p_mask if i < n - 1 else p_mask / 2
        out.append(MASK if n > 1 and rng.random() < p else name)
    if all(x == MASK for x in out):
        out[-1] = names[-1]
    return PATH_SEP.join(out)


def augment(
    products: Sequence[Product],
    taxonomy: Taxonomy,
    ratio: float = 0.2,
    per_leaf: int = 2,
    p_mask: float = 0.5,
    seed: int = 0,
) -> list[Product]:
    """Make synthetic products from masked taxonomy paths.

    * ``ratio`` of the real products get a twin whose title is replaced by its masked path
      (the description is kept), as in Figure 2;
    * every leaf of the taxonomy gets ``per_leaf`` samples made of the masked path alone,
      so leaves with no training data are still learnable.
    """
    rng = random.Random(seed)
    out: list[Product] = []
    labelled = [p for p in products if p.category is not None]
    for p in rng.sample(labelled, k=int(round(ratio * len(labelled)))):
        cat = taxonomy.by_path(p.category)  # type: ignore[arg-type]
        names = [a.name for a in taxonomy.ancestors(cat.id)]
        out.append(
            Product(
                id=f"aug:{p.id}",
                title=mask_path(names, rng, p_mask),
                description=p.description,
                context=p.context,
                category=p.category,
            )
        )
    for leaf in taxonomy.leaves:
        names = [a.name for a in taxonomy.ancestors(leaf.id)]
        for j in range(per_leaf):
            out.append(
                Product(
                    id=f"aug:{leaf.id}:{j}", title=mask_path(names, rng, p_mask), category=leaf.path
                )
            )
    return out
