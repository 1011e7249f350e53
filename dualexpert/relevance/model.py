"""The distillation model (paper 4.3, Figure 1; embedding variant, Figure 4).

A BERT-family cross-encoder with a classification head on CLS scores a (query, title) pair. During
training an auxiliary head learns the LLM's rationale from the encoder's token states:

* ``aux="decoder"``: an autoregressive decoder with cross-attention generates the rationale.
  The offline default is a BERT-style decoder initialised from the encoder's own weights
  (cross-attention layers new), since no T5 ships on PyPI; ``decoder="t5-small"`` (or any
  T5 name or folder) uses that model's decoder and LM head instead. ``decoder="smollm2"`` (or
  any causal LM: a folder or a ``.gguf`` file) uses a pretrained decoder-only LM: the encoder's
  token states, projected into its embedding space, are a prefix it reads before the rationale.
* ``aux="embedding"``: the mean-pooled encoder output, through a linear map, regresses a sentence
  embedding of the rationale (MSE).
* ``aux="tags"``: a linear token classifier on the encoder's token states predicts, for each
  input token, whether the rationale cites its word, and for which label (:mod:`.tags`).
* ``aux="none"``: the plain cross-encoder baseline.

With ``residual=True`` the cross-encoder's logit is added to a fixed prior logit per pair (the
``prior_logit`` input, from :class:`~dualexpert.relevance.prior.RelevancePrior`) and its head
starts at zero (``head_init="zero"``), so training starts from the prior's ranking and learns a
correction; ``head_init="normal"`` keeps the encoder's random initialisation of the head (a
correction of a few hundredths of a logit at the start), so the encoder gets a gradient from
the first step.

Only ``self.cross`` (an ``AutoModelForSequenceClassification``) is exported; it loads with
``sentence_transformers.CrossEncoder``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class RationaleDecoder(nn.Module):
    """An LM-head decoder conditioned on the cross-encoder's token states (projected by
    ``bridge`` to its width). ``forward`` returns the rationale's LM loss, padding ignored."""

    model: nn.Module
    bridge: nn.Module

    def condition(self, states: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
        """The model's keyword arguments that carry the encoder states."""
        raise NotImplementedError

    def forward(
        self, states: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor, attn: torch.Tensor
    ) -> torch.Tensor:
        labels = ids.masked_fill(attn == 0, -100)
        return self.model(**self.condition(self.bridge(states), mask), **self.targets(ids, attn),
                          labels=labels).loss  # fmt: skip

    def targets(self, ids: torch.Tensor, attn: torch.Tensor) -> dict[str, Any]:
        """The model's keyword arguments for the rationale tokens (beyond ``labels``)."""
        return {}


class BertStyleDecoder(RationaleDecoder):
    """A BERT decoder (causal self-attention + cross-attention) with an LM head."""

    def __init__(self, name_or_path: str, encoder_dim: int) -> None:
        super().__init__()
        from transformers import AutoConfig, BertLMHeadModel

        cfg = AutoConfig.from_pretrained(name_or_path)
        cfg.is_decoder = True
        cfg.add_cross_attention = True
        self.model = BertLMHeadModel.from_pretrained(name_or_path, config=cfg)
        dim = cfg.hidden_size
        self.bridge = nn.Identity() if dim == encoder_dim else nn.Linear(encoder_dim, dim)

    def condition(self, states: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
        return {"encoder_hidden_states": states, "encoder_attention_mask": mask}

    def targets(self, ids: torch.Tensor, attn: torch.Tensor) -> dict[str, Any]:
        return {"input_ids": ids, "attention_mask": attn}


class T5Decoder(RationaleDecoder):
    """The decoder and LM head of a T5 model, fed the (projected) encoder states."""

    def __init__(self, name_or_path: str, encoder_dim: int) -> None:
        super().__init__()
        from transformers import T5ForConditionalGeneration

        self.model = T5ForConditionalGeneration.from_pretrained(name_or_path)
        self.model.encoder = None  # the cross-encoder is the encoder
        dim = self.model.config.d_model
        self.bridge = nn.Identity() if dim == encoder_dim else nn.Linear(encoder_dim, dim)

    def condition(self, states: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
        from transformers.modeling_outputs import BaseModelOutput

        return {
            "encoder_outputs": BaseModelOutput(last_hidden_state=states),
            "attention_mask": mask,
        }


class PrefixLMDecoder(RationaleDecoder):
    """A pretrained causal LM (e.g. SmolLM2-135M) that reads the projected encoder states as a
    prefix, then a BOS token, then the rationale; only the rationale tokens are scored.

    With ``freeze=True`` the LM's own weights stay fixed and only ``bridge`` (and, through it,
    the encoder) learns: the rationale has to be carried by the prefix.
    """

    def __init__(self, name_or_path: str, encoder_dim: int, freeze: bool = True) -> None:
        super().__init__()
        self.model = load_causal_lm(name_or_path)
        if freeze:
            self.model.requires_grad_(False)
        cfg = self.model.config
        self.bridge = nn.Linear(encoder_dim, cfg.hidden_size)
        bos = cfg.bos_token_id if cfg.bos_token_id is not None else cfg.eos_token_id
        self.register_buffer("bos", torch.tensor([bos]), persistent=False)

    def forward(
        self, states: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor, attn: torch.Tensor
    ) -> torch.Tensor:
        embed = self.model.get_input_embeddings()
        n = ids.shape[0]
        bos = self.bos.expand(n, 1)
        inputs = torch.cat([self.bridge(states), embed(torch.cat([bos, ids], 1))], 1)
        am = torch.cat([mask, torch.ones_like(bos), attn.to(mask.dtype)], 1)
        positions = (am.long().cumsum(1) - 1).clamp(min=0)  # padded prefix slots take no place
        hidden = self.model.base_model(
            inputs_embeds=inputs, attention_mask=am, position_ids=positions
        ).last_hidden_state
        # the LM head only where a rationale token is predicted (BOS .. the last but one token)
        start = mask.shape[1]
        logits = self.model.get_output_embeddings()(hidden[:, start : start + ids.shape[1]])
        labels = ids.masked_fill(attn == 0, -100)
        return nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())


def is_t5(name_or_path: str) -> bool:
    from transformers import AutoConfig

    if is_gguf(name_or_path):
        return False
    return AutoConfig.from_pretrained(name_or_path).model_type in ("t5", "mt5", "umt5")


def is_gguf(name_or_path: str) -> bool:
    return str(name_or_path).endswith(".gguf")


def is_causal_lm(name_or_path: str) -> bool:
    """A decoder-only LM (a ``.gguf`` file, or a folder whose config is not BERT-like)."""
    if is_gguf(name_or_path):
        return True
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(name_or_path)
    return not cfg.is_encoder_decoder and cfg.model_type not in BERT_LIKE


BERT_LIKE = ("bert", "roberta", "xlm-roberta", "mpnet", "distilbert", "electra", "deberta-v2")


def load_causal_lm(name_or_path: str) -> nn.Module:
    """A causal LM from a folder, or from a ``.gguf`` file (dequantised to float32)."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    # float32 weights (GGUF is dequantised); ``torch_dtype`` is the spelling transformers 4.46+
    # all accept
    if is_gguf(name_or_path):
        p = Path(name_or_path)
        return AutoModelForCausalLM.from_pretrained(
            str(p.parent), gguf_file=p.name, torch_dtype=torch.float32
        )
    return AutoModelForCausalLM.from_pretrained(name_or_path, torch_dtype=torch.float32)


def load_decoder_tokenizer(name_or_path: str) -> Any:
    """The tokenizer that writes the decoder's targets (read from the ``.gguf`` file if one)."""
    from pathlib import Path

    from transformers import AutoTokenizer

    if is_gguf(name_or_path):
        p = Path(name_or_path)
        tok = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    else:
        tok = AutoTokenizer.from_pretrained(name_or_path)
    if tok.pad_token is None:  # causal LMs often ship none; padded slots are masked anyway
        tok.pad_token = tok.eos_token
    return tok


def make_decoder(name_or_path: str, encoder_dim: int) -> RationaleDecoder:
    """T5 → :class:`T5Decoder`; a causal LM → :class:`PrefixLMDecoder`; else BERT-style."""
    if is_t5(name_or_path):
        return T5Decoder(name_or_path, encoder_dim)
    if is_causal_lm(name_or_path):
        return PrefixLMDecoder(name_or_path, encoder_dim)
    return BertStyleDecoder(name_or_path, encoder_dim)


def output_layer(cross: nn.Module) -> nn.Linear:
    """The cross-encoder's last one-output linear layer: the one that writes its logit."""
    return [m for m in cross.modules() if isinstance(m, nn.Linear) and m.out_features == 1][-1]


class RationaleDistillModel(nn.Module):
    """Cross-encoder + auxiliary rationale head; ``forward`` returns the losses."""

    def __init__(
        self,
        encoder: str,
        aux: str = "decoder",
        decoder: str | None = None,
        embedding_dim: int | None = None,
        ignore_cls: bool = False,
        lam: float = 0.1,
        residual: bool = False,
        aux_norm: bool = False,
        head_init: str = "zero",
    ) -> None:
        super().__init__()
        from transformers import AutoModelForSequenceClassification

        if aux not in ("decoder", "embedding", "tags", "none"):
            raise ValueError(f"aux must be decoder, embedding, tags or none, not {aux!r}")
        self.cross = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=1)
        dim = self.cross.config.hidden_size
        self.aux, self.ignore_cls, self.lam = aux, ignore_cls, lam
        # aux_norm: L_aux is divided by its value on the first training batch, so lam weighs
        # two losses that both start near 1 (an untrained LM head starts near 10, an embedding
        # regression near 0.003)
        self.aux_norm = aux_norm
        self.register_buffer("aux_scale", torch.zeros(()), persistent=False)
        if head_init not in ("zero", "normal"):
            raise ValueError(f"head_init must be zero or normal, not {head_init!r}")
        if residual and head_init == "zero":  # the first logit is the prior's alone
            head = output_layer(self.cross)
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.decoder: nn.Module | None = None
        self.transform: nn.Module | None = None
        self.tagger: nn.Module | None = None
        if aux == "tags":
            from .tags import N_TAGS

            self.tagger = nn.Linear(dim, N_TAGS)
        elif aux == "decoder":
            self.decoder = make_decoder(decoder or encoder, dim)
        elif aux == "embedding":
            if not embedding_dim:
                raise ValueError("aux='embedding' needs embedding_dim (the rationale embedder's)")
            self.transform = nn.Sequential(
                nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, embedding_dim)
            )

    def encoder_parameters(self) -> list[nn.Parameter]:
        base = getattr(self.cross, self.cross.base_model_prefix)
        return list(base.parameters())

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        rationale_ids: torch.Tensor | None = None,
        rationale_mask: torch.Tensor | None = None,
        rationale_embedding: torch.Tensor | None = None,
        rationale_tags: torch.Tensor | None = None,
        prior_logit: torch.Tensor | None = None,
        aux_only: bool = False,
    ) -> dict[str, Any]:
        kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.cross(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=self.aux != "none",
            **kw,
        )
        logits = out.logits.squeeze(-1)
        if prior_logit is not None:  # residual: the cross-encoder corrects the prior
            logits = logits + prior_logit.to(logits.dtype)
        result: dict[str, Any] = {"logits": logits}
        zero = logits.new_zeros(())
        l_cls = (
            nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
            if labels is not None
            else zero
        )
        l_aux = zero
        if self.aux != "none":
            states = out.hidden_states[-1]
            mask = attention_mask
            if self.ignore_cls:
                states, mask = states[:, 1:], mask[:, 1:]
                if rationale_tags is not None:
                    rationale_tags = rationale_tags[:, 1:]
            if self.aux == "tags" and rationale_tags is not None:
                if (rationale_tags >= 0).any():  # else a batch of pairs without rationales
                    l_aux = nn.functional.cross_entropy(
                        self.tagger(states).flatten(0, 1).float(), rationale_tags.flatten()
                    )
            elif self.aux == "decoder" and rationale_ids is not None:
                l_aux = self.decoder(states, mask, rationale_ids, rationale_mask)
            elif self.aux == "embedding" and rationale_embedding is not None:
                m = mask.unsqueeze(-1).to(states.dtype)
                pooled = (states * m).sum(1) / m.sum(1).clamp(min=1.0)
                pred = self.transform(pooled)
                l_aux = nn.functional.mse_loss(pred, rationale_embedding.to(pred.dtype))
        scaled = l_aux
        if self.aux_norm and self.aux != "none" and l_aux.requires_grad:
            if self.aux_scale <= 0:
                self.aux_scale.fill_(float(l_aux.detach().clamp(min=1e-8)))
            scaled = l_aux / self.aux_scale
        loss = scaled if aux_only else l_cls + self.lam * scaled
        if not loss.requires_grad and torch.is_grad_enabled():
            # a warm-up batch in which no pair has a rationale (partial rationales): nothing to
            # learn, but the trainer still calls backward
            loss = loss.detach().requires_grad_()
        result.update(loss=loss, loss_cls=l_cls.detach(), loss_aux=l_aux.detach())
        return result
