"""The encoder + classification head over leaf categories."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel


class EncoderClassifier(nn.Module):
    """A transformer encoder, mean pooling over tokens, dropout and a linear head."""

    def __init__(self, encoder: PreTrainedModel, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw) -> torch.Tensor:
        kw = {k: v for k, v in kw.items() if k == "token_type_ids" and v is not None}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kw)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    @torch.no_grad()
    def init_head_from_labels(
        self, tokenizer: Any, texts: list[str], scale: float = 5.0, max_length: int = 32
    ) -> None:
        """Start each class's weights at the encoder's embedding of its label text.

        The head then begins as a nearest-label classifier (label semantics, paper 3.1.1), so
        rare and unseen leaves are reachable from the first step.
        """
        was_training = self.training
        self.eval()
        embs = []
        for i in range(0, len(texts), 64):
            enc = tokenizer(
                texts[i : i + 64],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            embs.append(self.embed(enc["input_ids"], enc["attention_mask"]))
        e = torch.cat(embs)
        norm = e.norm(dim=1, keepdim=True).clamp(min=1e-6)
        self.head.weight.copy_(e / norm * (scale / norm.mean()))
        self.head.bias.zero_()
        self.train(was_training)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        pooled = self.embed(input_ids, attention_mask, token_type_ids=token_type_ids)
        logits = self.head(self.dropout(pooled))
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out
