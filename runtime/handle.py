"""A loaded model as the probes see it: the model, its tokenizer, what it is, and the lock its passes take turns at.

Its own module, so that every probe can name the type without importing the loader (runtime.models), which itself
imports the derived MoE (probes.moefication) that is built from probes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers.configuration_utils import PretrainedConfig
from transformers.modeling_utils import PreTrainedModel
from transformers.models.auto.modeling_auto import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from runtime.turns import Turns

_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def is_causal_config(config: PretrainedConfig) -> bool:
    """Whether the config's architecture is a decoder (a causal language model)."""
    return any(a.endswith(_CAUSAL_SUFFIXES) for a in config.architectures or [])


def model_class(config: PretrainedConfig) -> type:
    """The transformers class a config's model loads as."""
    if getattr(config, "is_encoder_decoder", False):
        return AutoModelForSeq2SeqLM
    return AutoModelForCausalLM if is_causal_config(config) else AutoModel


@dataclass
class ModelHandle:
    """A loaded model with its tokenizer, what it is, and a first-come-first-served lock that serialises its
    forward passes."""

    name: str
    source: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    fingerprint: str
    load_seconds: float
    lock: Turns = field(default_factory=Turns, repr=False)

    @property
    def config(self) -> PretrainedConfig:
        return self.model.config

    @property
    def text_config(self) -> PretrainedConfig:
        return self.config.get_text_config()

    @property
    def architecture(self) -> str:
        return (self.config.architectures or [type(self.model).__name__])[0]

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def n_layers(self) -> int:
        return int(self.text_config.num_hidden_layers)

    @property
    def n_heads(self) -> int:
        return int(self.text_config.num_attention_heads)

    @property
    def n_kv_heads(self) -> int:
        return int(getattr(self.text_config, "num_key_value_heads", None) or self.n_heads)

    @property
    def context_length(self) -> int | None:
        """The longest text the model was built for (its position embeddings, or its rotary range), if it says."""
        found = getattr(self.text_config, "max_position_embeddings", None)
        return int(found) if found else None

    @property
    def layer_windows(self) -> list[int | None]:
        """Per layer, the sliding window its attention is limited to (Gemma 3's 512-token layers, Mistral's), None
        for full attention: from the config's layer_types and sliding_window."""
        config = self.text_config
        window = getattr(config, "sliding_window", None)
        types = getattr(config, "layer_types", None)
        if not window or (types is None and not getattr(config, "use_sliding_window", True)):
            return [None] * self.n_layers
        if types is None:
            return [int(window)] * self.n_layers
        return [int(window) if kind == "sliding_attention" else None for kind in types]

    @property
    def is_causal(self) -> bool:
        """Decoders attend only to earlier tokens; encoders (BERT) attend both ways."""
        return is_causal_config(self.config)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())
