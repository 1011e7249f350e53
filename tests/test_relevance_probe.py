"""The hidden-state probe (paper 4.2's ceiling baseline) on a real local LLM (SmolLM2)."""

from __future__ import annotations

import numpy as np
import pytest
from relevance_fixtures import write_pairs

from dualexpert.relevance import load_pairs
from dualexpert.relevance.probe import HiddenStateProbe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return load_pairs(write_pairs(tmp_path_factory.mktemp("p"))[0])


class _Stop:
    """Wraps a Llama and raises KeyboardInterrupt at the n-th embed call."""

    def __init__(self, llama, n: int) -> None:
        self.llama, self.n, self.calls = llama, n, 0

    def embed(self, text: str):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.llama.embed(text)


def test_probe_vectors_fit_and_resume(pairs, tmp_path):
    cache = tmp_path / "vec.npz"
    probe = HiddenStateProbe("smollm2", n_threads=2, cache=cache, checkpoint_every=2)
    real = probe.llama
    probe._llm = _Stop(real, n=6)
    with pytest.raises(KeyboardInterrupt):
        probe.embed(pairs[:8])
    # the checkpoints written before the interruption survive it
    saved = HiddenStateProbe("smollm2", cache=cache)._vectors
    assert len(saved) == 4

    probe._llm = real
    x = probe.embed(pairs)
    assert x.shape == (len(pairs), real.n_embd())
    # one vector per pair text: a query with two different products gives two different vectors
    assert not np.allclose(x[0], x[1])
    np.testing.assert_allclose(x[:4], np.stack([saved[p.id] for p in pairs[:4]]), rtol=1e-5)

    # a new probe on the same cache needs no LLM at all
    again = HiddenStateProbe("smollm2", cache=cache, C=1.0)
    again._llm = _Stop(real, n=1)
    prob = again.fit(pairs[:16]).predict_proba(pairs[16:])
    assert prob.shape == (len(pairs) - 16,) and ((prob >= 0) & (prob <= 1)).all()
    assert again.chosen_C == 1.0


def test_probe_errors(pairs, tmp_path):
    probe = HiddenStateProbe("smollm2", cache=tmp_path / "v.npz")
    with pytest.raises(RuntimeError, match="fit"):
        probe.predict_proba(pairs[:2])
    positives = [p for p in pairs if p.label == 1][:3]
    probe._vectors = {p.id: np.ones(4, dtype=np.float32) * i for i, p in enumerate(positives)}
    with pytest.raises(ValueError, match="both"):
        probe.fit(positives)


def test_no_model_name_means_the_default_local_llm():
    # the benchmark passes --llm's None through; the probe must not hand None to llama.cpp
    assert HiddenStateProbe(None).model == HiddenStateProbe().model == "qwen-1.5b"
