"""The bundled fine-tuning task (probes/data/finetune_facts.json): made-up facts about the craftspeople of an
invented valley, each written in three training templates and, held out, in one of two others (alternating), so
that the held-out loss falls only if a run learns the facts, not one way of writing them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from probes.batches import by_length
from runtime.handle import ModelHandle

PATH = Path(__file__).with_name("data") / "finetune_facts.json"
DESCRIPTION = "made-up facts (24 invented craftspeople: name, trade, town)"


@dataclass(frozen=True)
class Task:
    """The task's sentences and a digest of the file they come from (it keys stored runs and cached results)."""

    train: tuple[str, ...]
    heldout: tuple[str, ...]
    digest: str


@cache
def task() -> Task:
    """Every fact in every training template; each fact in one held-out template, taking turns."""
    data = PATH.read_bytes()
    parsed = json.loads(data)
    facts, heldout = parsed["facts"], parsed["heldout"]
    return Task(
        train=tuple(template.format(**fact) for fact in facts for template in parsed["train"]),
        heldout=tuple(heldout[i % len(heldout)].format(**fact) for i, fact in enumerate(facts)),
        digest=hashlib.sha256(data).hexdigest()[:16],
    )


def token_lists(handle: ModelHandle, sentences: tuple[str, ...]) -> list[list[int]]:
    """Each sentence's token ids, tokenised as every probe does (`probes.batches.by_length`), shortest first."""
    return [ids for group in by_length(handle, sentences).values() for ids in group]


def padded(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(token ids, attention mask), each (batch, longest): the sequences padded on the right with zeros."""
    longest = max(len(s) for s in sequences)
    ids = np.zeros((len(sequences), longest), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)], mask[row, : len(sequence)] = sequence, 1
    return torch.from_numpy(ids), torch.from_numpy(mask)
