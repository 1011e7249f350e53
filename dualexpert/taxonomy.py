"""A hierarchical category tree: paths, leaf / full-path / descriptive names, lookups, loaders.

No torch and no DSPy here, by design: the taxonomy is plain data.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PATH_SEP = " > "
_CODE_RE = re.compile(r"^(\d+)_(.+)$")


class TaxonomyError(ValueError):
    """Base class for taxonomy problems."""


class UnknownCategoryError(TaxonomyError, KeyError):
    """A category id, label or path that the taxonomy does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class CycleError(TaxonomyError):
    """The parent links of a taxonomy loop back on themselves."""


class AmbiguousCategoryError(TaxonomyError):
    """A name that matches several categories under different parents."""


@dataclass(frozen=True)
class Category:
    """One node of the tree.

    ``label`` is the raw string as given by the data (kept exactly, codes and U+FFFD included);
    ``name`` is the display name (a GS1-style ``64010100_`` code prefix stripped when asked).
    ``path`` holds the raw labels from the root down to this node.
    """

    id: str
    label: str
    name: str
    path: tuple[str, ...]
    parent: str | None = None
    children: tuple[str, ...] = field(default=(), compare=False)

    @property
    def depth(self) -> int:
        return len(self.path)

    @property
    def is_leaf(self) -> bool:
        return not self.children


def _display_name(label: str, strip_codes: bool) -> str:
    if strip_codes:
        m = _CODE_RE.match(label)
        if m:
            return m.group(2).strip()
    return label.strip()


class Taxonomy:
    """A tree of categories, built from paths or loaded from a standard file.

    Each category's id is its full path joined with `` > `` unless the source gives ids.
    """

    def __init__(self, categories: Iterable[Category], name: str = "taxonomy") -> None:
        self.name = name
        self._by_id: dict[str, Category] = {}
        for c in categories:
            if c.id in self._by_id:
                raise TaxonomyError(f"duplicate category id {c.id!r}")
            self._by_id[c.id] = c
        self._by_path = {c.path: c for c in self._by_id.values()}
        self._shared_paths = {
            p for p, n in Counter(c.path for c in self._by_id.values()).items() if n > 1
        }
        self._by_name: dict[str, list[str]] = {}
        for c in self._by_id.values():
            self._by_name.setdefault(c.name.casefold(), []).append(c.id)
            if c.label != c.name:
                self._by_name.setdefault(c.label.casefold(), []).append(c.id)
        self._leaves = [c.id for c in self._by_id.values() if c.is_leaf]

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_paths(
        cls,
        paths: Iterable[Sequence[str]],
        strip_codes: bool | str = "auto",
        name: str = "taxonomy",
    ) -> Taxonomy:
        """Build the tree from category paths (root first), e.g. from a catalogue's labels.

        ``strip_codes="auto"`` strips numeric ``NNNN_`` prefixes from display names when every
        label carries one (GS1 / MWPD style). Raw labels are always kept as given.
        """
        seen: dict[tuple[str, ...], None] = {}
        for p in paths:
            tup = tuple(p)
            if not tup:
                raise TaxonomyError("empty category path")
            for i in range(1, len(tup) + 1):
                seen.setdefault(tup[:i], None)
        if strip_codes == "auto":
            strip_codes = bool(seen) and all(_CODE_RE.match(p[-1]) for p in seen)
        children: dict[tuple[str, ...], list[str]] = {p: [] for p in seen}
        for p in seen:
            if len(p) > 1:
                children[p[:-1]].append(PATH_SEP.join(p))
        cats = [
            Category(
                id=PATH_SEP.join(p),
                label=p[-1],
                name=_display_name(p[-1], bool(strip_codes)),
                path=p,
                parent=PATH_SEP.join(p[:-1]) if len(p) > 1 else None,
                children=tuple(children[p]),
            )
            for p in seen
        ]
        return cls(cats, name=name)

    @classmethod
    def from_parent_links(
        cls,
        nodes: Iterable[tuple[str, str, str | None]],
        name: str = "taxonomy",
        allow_duplicate_paths: bool = False,
    ) -> Taxonomy:
        """Build from ``(id, label, parent_id)`` triples; detects unknown parents and cycles."""
        label: dict[str, str] = {}
        parent: dict[str, str | None] = {}
        for nid, lab, par in nodes:
            if nid in label:
                raise TaxonomyError(f"duplicate category id {nid!r}")
            label[nid], parent[nid] = lab, par
        for nid, par in parent.items():
            if par is not None and par not in label:
                raise UnknownCategoryError(f"category {nid!r} names unknown parent {par!r}")
        paths: dict[str, tuple[str, ...]] = {}
        for nid in label:
            chain, cur, on_chain = [], nid, set()
            while cur is not None and cur not in paths:
                if cur in on_chain:
                    raise CycleError(f"cycle in taxonomy through {cur!r}: {' -> '.join(chain)}")
                on_chain.add(cur)
                chain.append(cur)
                cur = parent[cur]
            prefix = paths[cur] if cur is not None else ()
            for c in reversed(chain):
                prefix = prefix + (label[c],)
                paths[c] = prefix
        children: dict[str, list[str]] = {n: [] for n in label}
        for nid, par in parent.items():
            if par is not None:
                children[par].append(nid)
        cats = [
            Category(
                id=nid,
                label=label[nid],
                name=label[nid].strip(),
                path=paths[nid],
                parent=parent[nid],
                children=tuple(children[nid]),
            )
            for nid in label
        ]
        tax = cls(cats, name=name)
        dup = [p for p, n in Counter(c.path for c in cats).items() if n > 1]
        if dup and not allow_duplicate_paths:
            raise AmbiguousCategoryError(
                f"{len(dup)} path(s) are shared by several categories, e.g. {dup[0]!r}; "
                "look those up by id"
            )
        return tax

    # ---- standard files -----------------------------------------------------------------
    @classmethod
    def from_shopify(cls, path: str | Path) -> Taxonomy:
        """Shopify ``categories.<lang>.txt``: ``gid://shopify/TaxonomyCategory/ap-1 : A > B``."""
        nodes: dict[tuple[str, ...], str] = {}
        for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if " : " not in line:
                raise TaxonomyError(f"{path}:{lineno}: expected '<gid> : <path>', got {line!r}")
            gid, full = line.split(" : ", 1)
            nodes[tuple(s.strip() for s in full.split(">"))] = gid.strip().rsplit("/", 1)[-1]
        return cls._from_id_paths(nodes, name=f"shopify:{Path(path).name}")

    @classmethod
    def from_google(cls, path: str | Path) -> Taxonomy:
        """Google product taxonomy as YAML-like ``- id: N`` / ``full_name: A > B`` pairs."""
        nodes: dict[tuple[str, ...], str] = {}
        cur_id: str | None = None
        for lineno, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            line = raw.strip()
            if line.startswith("- id:"):
                cur_id = line.split(":", 1)[1].strip()
            elif line.startswith("full_name:"):
                if cur_id is None:
                    raise TaxonomyError(f"{path}:{lineno}: full_name without an id")
                full = line.split(":", 1)[1].strip().strip("'\"")
                nodes[tuple(s.strip() for s in full.split(PATH_SEP))] = cur_id
                cur_id = None
        return cls._from_id_paths(nodes, name=f"google:{Path(path).name}")

    @classmethod
    def from_bestbuy(cls, path: str | Path) -> Taxonomy:
        """BestBuy ``categories.json``: objects with ``id``, ``name`` and ``path`` (root first)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        triples = []
        for i, obj in enumerate(data):
            try:
                chain = obj["path"]
                nid = obj["id"]
            except (KeyError, TypeError) as e:
                raise TaxonomyError(f"{path}: record {i}: missing field {e}") from None
            par = chain[-2]["id"] if len(chain) > 1 else None
            triples.append((nid, obj.get("name") or chain[-1].get("name") or nid, par))
        known = {t[0] for t in triples}
        # BestBuy lists some parents only inside paths; add them as nodes.
        for obj in data:
            for j, node in enumerate(obj["path"]):
                if node["id"] not in known:
                    known.add(node["id"])
                    par = obj["path"][j - 1]["id"] if j else None
                    triples.append((node["id"], node.get("name") or node["id"], par))
        # BestBuy repeats a few paths under different ids: keep them, look them up by id.
        return cls.from_parent_links(
            triples, name=f"bestbuy:{Path(path).name}", allow_duplicate_paths=True
        )

    @classmethod
    def _from_id_paths(cls, nodes: dict[tuple[str, ...], str], name: str) -> Taxonomy:
        for p in list(nodes):
            for i in range(1, len(p)):
                if p[:i] not in nodes:
                    raise UnknownCategoryError(f"{name}: parent path {p[:i]!r} of {p!r} is missing")
        ids = {p: nodes[p] for p in nodes}
        return cls.from_parent_links(
            [(ids[p], p[-1], ids[p[:-1]] if len(p) > 1 else None) for p in nodes], name=name
        )

    @classmethod
    def load(cls, path: str | Path) -> Taxonomy:
        """Load a ``taxonomy.json`` written by :meth:`save`, or a Shopify/Google/BestBuy file."""
        p = Path(path)
        if p.suffix == ".json":
            obj = json.loads(p.read_text(encoding="utf-8"))
            if isinstance(obj, dict) and "categories" in obj:
                cats = [
                    Category(
                        id=c["id"],
                        label=c["label"],
                        name=c["name"],
                        path=tuple(c["path"]),
                        parent=c["parent"],
                        children=tuple(c["children"]),
                    )
                    for c in obj["categories"]
                ]
                return cls(cats, name=obj.get("name", "taxonomy"))
            return cls.from_bestbuy(p)
        if p.suffix in (".yml", ".yaml"):
            return cls.from_google(p)
        if p.suffix == ".txt":
            return cls.from_shopify(p)
        raise TaxonomyError(f"cannot tell the taxonomy format of {p}")

    def save(self, path: str | Path) -> None:
        obj = {
            "name": self.name,
            "categories": [
                {
                    "id": c.id,
                    "label": c.label,
                    "name": c.name,
                    "path": list(c.path),
                    "parent": c.parent,
                    "children": list(c.children),
                }
                for c in self._by_id.values()
            ],
        }
        Path(path).write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")

    # ---- lookups ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, key: object) -> bool:
        return key in self._by_id or (isinstance(key, tuple) and key in self._by_path)

    def __iter__(self):
        return iter(self._by_id.values())

    @property
    def leaves(self) -> list[Category]:
        return [self._by_id[i] for i in self._leaves]

    @property
    def depth(self) -> int:
        return max((c.depth for c in self._by_id.values()), default=0)

    def get(self, category_id: str) -> Category:
        try:
            return self._by_id[category_id]
        except KeyError:
            raise UnknownCategoryError(
                f"unknown category id {category_id!r} in taxonomy {self.name!r}"
            ) from None

    def by_path(self, path: Sequence[str] | str) -> Category:
        tup = tuple(s.strip() for s in path.split(">")) if isinstance(path, str) else tuple(path)
        if tup in self._shared_paths:
            raise AmbiguousCategoryError(
                f"path {PATH_SEP.join(tup)!r} is shared by several categories; use the id"
            )
        try:
            return self._by_path[tup]
        except KeyError:
            raise UnknownCategoryError(
                f"unknown category path {PATH_SEP.join(tup)!r} in taxonomy {self.name!r}"
            ) from None

    def by_name(self, name: str) -> Category:
        """Look a category up by its name; refuses names shared under different parents."""
        ids = self._by_name.get(name.casefold(), [])
        if not ids:
            raise UnknownCategoryError(f"no category named {name!r} in taxonomy {self.name!r}")
        if len(ids) > 1:
            parents = sorted(PATH_SEP.join(self._by_id[i].path[:-1]) or "<root>" for i in ids)
            raise AmbiguousCategoryError(
                f"category name {name!r} is ambiguous: it appears under {parents}; "
                "use the full path"
            )
        return self._by_id[ids[0]]

    def ambiguous_names(self) -> dict[str, list[str]]:
        """Names that appear under more than one parent (classify on the full path there)."""
        return {n: ids for n, ids in self._by_name.items() if len(ids) > 1}

    def ancestors(self, category_id: str) -> list[Category]:
        """The chain from the root down to and including the category."""
        chain = [self.get(category_id)]
        while chain[-1].parent is not None:
            chain.append(self.get(chain[-1].parent))
        return chain[::-1]

    # ---- representations ----------------------------------------------------------------
    def leaf_name(self, category_id: str) -> str:
        return self.get(category_id).name

    def full_path(self, category_id: str, sep: str = PATH_SEP) -> str:
        return sep.join(a.name for a in self.ancestors(category_id))

    def descriptive_name(self, category_id: str) -> str:
        """The leaf name with the nearest distinct ancestors that tell it apart.

        ``Cake Toppers (Toys & Games › Kids' Party Supplies)``. Ancestors whose name repeats
        the leaf's are dropped (MWPD repeats names across levels).
        """
        anc = self.ancestors(category_id)
        leaf = anc[-1].name
        ctx: list[str] = []
        for a in anc[:-1]:
            if a.name != leaf and a.name not in ctx:
                ctx.append(a.name)
        return f"{leaf} ({' › '.join(ctx[-2:])})" if ctx else leaf

    def represent(self, category_id: str, style: str = "path") -> str:
        """``leaf``, ``path`` or ``descriptive`` text for a category."""
        if style == "leaf":
            return self.leaf_name(category_id)
        if style in ("path", "full_path"):
            return self.full_path(category_id)
        if style in ("descriptive", "descriptive_name"):
            return self.descriptive_name(category_id)
        raise ValueError(f"unknown representation {style!r}: use leaf, path or descriptive")

    def level_labels(self, category_id: str) -> list[str]:
        """Raw labels per level, root first (for per-level metrics)."""
        return list(self.get(category_id).path)

    def resolve(self, value: str | Sequence[str]) -> Category:
        """Find a category from an id, a raw path tuple, a ``A > B`` path string or a name."""
        if isinstance(value, str):
            if value in self._by_id:
                return self._by_id[value]
            if ">" in value:
                try:
                    return self.by_path(value)
                except UnknownCategoryError:
                    pass
            return self.by_name(value)
        return self.by_path(value)
