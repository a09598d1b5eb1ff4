"""Tiny randomly initialised models of every MoE family lmscope routes (for tests only, never shown as real), built
from their configs with seeded weights and saved as model folders. Needs transformers and torch alone, so that the
GPU check (tests/test_cuda.py) can use it where the suite's browser fixtures cannot run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import transformers
from transformers import PreTrainedTokenizerBase

LLAMA_LIKE = {
    "hidden_size": 32,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
}
MLA = {
    "num_key_value_heads": 4,
    "kv_lora_rank": 16,
    "q_lora_rank": None,
    "qk_nope_head_dim": 8,
    "qk_rope_head_dim": 8,
    "v_head_dim": 8,
}
FAMILIES: dict[str, tuple[str, dict]] = {
    "mixtral": ("MixtralConfig", LLAMA_LIKE | {"num_local_experts": 4, "num_experts_per_tok": 2}),
    "qwen2_moe": (
        "Qwen2MoeConfig",
        LLAMA_LIKE
        | {
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 16,
            "shared_expert_intermediate_size": 32,
        },
    ),
    "qwen3_moe": (
        "Qwen3MoeConfig",
        LLAMA_LIKE
        | {
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 16,
            "head_dim": 8,
            "norm_topk_prob": True,
        },
    ),
    "olmoe": ("OlmoeConfig", LLAMA_LIKE | {"num_experts": 4, "num_experts_per_tok": 2}),
    "deepseek_v2": (
        "DeepseekV2Config",
        LLAMA_LIKE
        | MLA
        | {
            "n_routed_experts": 4,
            "n_shared_experts": 2,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 16,
            "topk_method": "group_limited_greedy",
            "n_group": 2,
            "topk_group": 1,
        },
    ),
    "deepseek_v3": (
        "DeepseekV3Config",
        LLAMA_LIKE
        | MLA
        | {
            "n_routed_experts": 8,
            "n_shared_experts": 1,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 16,
            "n_group": 2,
            "topk_group": 1,
            "first_k_dense_replace": 1,
        },
    ),
    "granitemoe": ("GraniteMoeConfig", LLAMA_LIKE | {"num_local_experts": 4, "num_experts_per_tok": 2}),
    "phimoe": ("PhimoeConfig", LLAMA_LIKE | {"num_local_experts": 4, "num_experts_per_tok": 2}),
    "gpt_oss": (
        "GptOssConfig",
        LLAMA_LIKE | {"num_local_experts": 4, "num_experts_per_tok": 2, "head_dim": 8, "sliding_window": 8},
    ),
    "jetmoe": (
        "JetMoeConfig",
        {
            "hidden_size": 32,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_key_value_heads": 2,
            "kv_channels": 8,
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
        },
    ),
    "switch_transformers": (
        "SwitchTransformersConfig",
        {
            "d_model": 32,
            "d_kv": 8,
            "d_ff": 32,
            "num_heads": 4,
            "num_layers": 2,
            "num_decoder_layers": 2,
            "num_sparse_encoder_layers": 2,
            "num_sparse_decoder_layers": 2,
            "num_experts": 4,
            "expert_capacity": 4,  # fewer slots than tokens: Switch drops the overflow
        },
    ),
}


def save_folders(tokenizer: PreTrainedTokenizerBase, make_folder: Callable[[str], Path]) -> dict[str, Path]:
    """Every family's tiny model with `tokenizer`, each saved to make_folder(family) (a new empty folder)."""
    folders = {}
    for family, (config_name, kwargs) in FAMILIES.items():
        config = getattr(transformers, config_name)(vocab_size=len(tokenizer), **kwargs)
        torch.manual_seed(0)
        auto = transformers.AutoModelForSeq2SeqLM if config.is_encoder_decoder else transformers.AutoModelForCausalLM
        model = auto.from_config(config)
        for module in model.modules():  # large, distinct router scores; DeepSeek-V3's bias must matter
            if hasattr(module, "e_score_correction_bias"):
                module.e_score_correction_bias.normal_(0, 0.5)
        folder = make_folder(family)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[family] = folder
    return folders
