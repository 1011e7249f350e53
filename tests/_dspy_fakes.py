"""Test helpers: a scripted lm15 engine (parsing and flow only), fast domain experts."""

from __future__ import annotations

import json
import threading
from typing import Any


class FakeEngine:
    """An lm15 engine that answers any DSPy signature from its JSON schema: integers are
    ``choice``, lists ``[choice]``, strings a short phrase. Plain-text requests (GEPA's
    reflection) get a fenced instruction. Records every request."""

    supports_response_schema = True
    supports_function_calling = False
    supports_reasoning = False
    supported_params = frozenset(
        {"temperature", "max_tokens", "top_p", "stop", "seed", "response_format", "n"}
    )

    def __init__(self, choice: int = 1, script: list[dict] | None = None):
        self.choice = choice
        self.script = list(script or [])  # replies given in order, before the generic ones
        self.requests: list[Any] = []
        self._lock = threading.Lock()

    def _value(self, name: str, spec: dict) -> Any:
        t = spec.get("type")
        if "enum" in spec:
            return spec["enum"][0]
        if name == "choice" or t == "integer":
            return self.choice
        if t == "array":
            return [self.choice]
        if t == "number":
            return 0.5
        if t == "boolean":
            return True
        if t == "object":
            return {}
        return f"a {name.replace('_', ' ')}"

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        with self._lock:
            self.requests.append(request)
        fmt = request.config.response_format or {}
        if fmt.get("type") == "json_schema":
            props = fmt["schema"].get("properties", {})
            with self._lock:
                reply = self.script.pop(0) if self.script else {}
            text = json.dumps({k: reply.get(k, self._value(k, v)) for k, v in props.items()})
        elif fmt.get("type") == "json_object" and self.script:  # no schema (e.g. dict fields)
            with self._lock:
                text = json.dumps(self.script.pop(0))
        else:
            text = "```\nChoose the candidate whose words match the product best.\n```"
        return Response(
            id="fake",
            model="fake/engine",
            message=Message.assistant([TextPart(text)]),
            finish_reason="stop",
            usage=Usage(input_tokens=10, output_tokens=5),
        )

    def dump_state(self) -> dict[str, Any]:
        return {"choice": self.choice}

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> FakeEngine:
        return cls(**state)

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))


def fake_lm(choice: int = 1, script: list[dict] | None = None):
    import dspy

    engine = FakeEngine(choice, script)
    return dspy.LM("fake/engine", engine=engine, cache=False, temperature=0.0), engine


def tfidf_domain(products):
    """A TF-IDF linear ranker with a taxonomy: a domain expert that trains in milliseconds."""
    from dualexpert.evaluation.baselines import TfidfLinearRanker
    from dualexpert.taxonomy import Taxonomy

    ranker = TfidfLinearRanker().fit(products)
    ranker.taxonomy = Taxonomy.from_paths([p.category for p in products])
    return ranker


def tiny_domain_expert(folder):
    """A real DomainExpert, barely trained (about 30 s on two busy cores), saved to ``folder``."""
    from dualexpert.demo import split_demo
    from dualexpert.domain import DomainExpert

    train, _ = split_demo(seed=0)
    expert = DomainExpert(
        epochs=0.3,
        batch_size=32,
        max_length=16,
        learning_rate=2e-4,
        seed=0,
        label_augmentation=False,
        lexical=False,  # unfused: the benchmark routes by quantiles of distinct confidences
    ).fit(train, progress=False)
    expert.save(folder)
    return expert
