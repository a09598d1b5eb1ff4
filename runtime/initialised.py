"""transformers' initialisation of an architecture, drawn where nothing else draws.

transformers initialises weights from torch's global generator, which every thread of a server shares: building any
module draws from it (a LoRA layer in another session's fine-tuning, say), so a seeded initialisation in a session's
thread would come out differently whenever another session builds something meanwhile. `initial_weights` draws in a
child process of its own (runtime.child) and hands back the weights asked for; `seeded_model` is the draw itself,
for code that already runs in such a child (runtime.untrained).
"""

from __future__ import annotations

import json

import torch
from transformers.configuration_utils import PretrainedConfig
from transformers.modeling_utils import PreTrainedModel
from transformers.models.auto.configuration_auto import AutoConfig

from runtime import child
from runtime.handle import model_class
from runtime.settings import settings


def seeded_model(config: PretrainedConfig, seed: int, dtype: torch.dtype) -> PreTrainedModel:
    """The config's model as transformers initialises it, torch's global generator seeded `seed` first: call it only
    in a process where nothing else draws."""
    torch.manual_seed(seed)
    return model_class(config).from_config(config, dtype=dtype, trust_remote_code=settings().trust_remote_code)


def initial_weights(config: PretrainedConfig, seed: int, dtype: torch.dtype, suffix: str) -> dict[str, torch.Tensor]:
    """The weights whose names end with `suffix` in `seeded_model(config, seed, dtype)`, drawn in a child process."""
    request = {
        "config": json.loads(config.to_json_string()),
        "seed": seed,
        "dtype": str(dtype).removeprefix("torch."),
        "suffix": suffix,
    }
    drawn = child.run(__name__, request, lambda *_: None, f"Initialising the {config.model_type} model's '{suffix}'")
    # float32 carries every float type's values exactly (numpy has no bfloat16).
    return {name: torch.from_numpy(array).to(dtype) for name, array in drawn.items()}


def _draw(request: dict, on_progress: child.Progress) -> dict:
    """In the child process: the asked-for weights of the seeded model, as float32 arrays."""
    fields = dict(request["config"])
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    model = seeded_model(config, request["seed"], getattr(torch, request["dtype"]))
    return {
        name: weight.detach().float().numpy()
        for name, weight in model.state_dict().items()
        if name.endswith(request["suffix"])
    }


if __name__ == "__main__":
    child.serve(_draw)
