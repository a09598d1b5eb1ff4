"""Calibrated compression of a whole model: Wanda, SparseGPT and GPTQ, block after block.

Each method needs the inputs of the layer it compresses (probes.reconstruction). They are read on calibration text
that is never held out: corpus sentences from the end of the bundled corpus, none of them among the held-out
sentences or in the user's text, joined and cut into sequences of equal length. As in the papers, the blocks are
compressed in order and the inputs of block i are those of the model whose blocks 0..i-1 are already compressed,
so a block's compression makes up for the error of the blocks before it.

Runs on a private copy of the model only (`pruning.model_copy`): the hooks that record each block's arguments and
read its layers' inputs are set on the copy's modules, for one call, and removed after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from probes import corpus, reconstruction
from probes.residual import blocks
from probes.text import clean
from results.pruning import MAX_BITS, Compression
from runtime import limits
from runtime.errors import LmscopeError
from runtime.forward import forward
from runtime.handle import ModelHandle
from runtime.hooks import observing

DEFAULT_SEQUENCES = 16
DEFAULT_LENGTH = 128
# (blocks done, blocks in all) -> None
Progress = Callable[[int, int], None]
# A matrix of the model: (layer, name)
Key = tuple[int, str]


def calibration_ids(handle: ModelHandle, held_out: Sequence[str], sequences: int, length: int) -> list[list[int]]:
    """`sequences` token sequences of `length` tokens of calibration text (each with the tokenizer's own start,
    e.g. Gemma's <bos>), from the corpus's last sentences, skipping every held-out sentence and any that appears in
    the held-out text."""
    limits.check_range(sequences, 1, limits.CALIBRATION_SEQUENCES, "calibration sequences")
    limits.check_range(length, 8, limits.CALIBRATION_LENGTH, "calibration length (tokens)")
    excluded = set(held_out)
    joined = " ".join(
        s for s in reversed(corpus.sentences()) if s not in excluded and not any(s in h for h in held_out)
    )
    start = handle.tokenizer("")["input_ids"]  # what the tokenizer puts before every text
    body = length - len(start)
    ids = handle.tokenizer(clean(joined), add_special_tokens=False)["input_ids"]
    if len(ids) < sequences * body:
        raise LmscopeError(
            f"The corpus has {len(ids):,} tokens outside the held-out sentences, fewer than {sequences} calibration "
            f"sequences of {length} tokens: choose fewer or shorter sequences, or fewer held-out sentences."
        )
    return [start + ids[i * body : (i + 1) * body] for i in range(sequences)]


def _compress(
    weight: torch.Tensor, inputs: reconstruction.InputStatistics, compression: Compression, rows: list[int]
) -> torch.Tensor | reconstruction.Quantized:
    """The compressed matrices stacked in `weight` (`rows` each), which read the same inputs."""
    if compression.method == "wanda":
        return reconstruction.wanda(weight, inputs.input_norms, float(compression.amount), compression.nm)
    if compression.method == "sparsegpt":
        sparsity = float(compression.amount)
        return reconstruction.sparsegpt(weight, inputs.hessian, sparsity, compression.nm, segments=rows)
    if compression.method == "gptq" and int(compression.amount) >= MAX_BITS:
        return weight
    if compression.method == "gptq":
        return reconstruction.gptq_quantized(weight, inputs.hessian, int(compression.amount), compression.group or None)
    raise ValueError(f"{compression.method} is not a calibrated method")


def block_calls(twin: ModelHandle, batch: np.ndarray) -> list[tuple[tuple, dict]]:
    """The positional and keyword arguments each block of the copy is called with on the batch (one pass, heard
    through `observing`)."""
    layers = blocks(twin)
    calls: list[tuple[tuple, dict]] = [((), {})] * len(layers)

    def recorder(index: int) -> Callable[[torch.nn.Module, tuple, dict], None]:
        def record(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            calls[index] = (args, kwargs)

        return record

    with observing(calls={block: recorder(i) for i, block in enumerate(layers)}):
        forward(twin, batch, use_cache=False)
    return calls


def block_output(output: object) -> torch.Tensor:
    """A block's output hidden states (some families return a tuple)."""
    return output[0] if isinstance(output, tuple) else output  # pyright: ignore[reportReturnType]


def compress_in_place(
    twin: ModelHandle,
    matrices: Sequence[tuple[int, str, torch.nn.Module]],
    compression: Compression,
    calibration: list[list[int]],
    on_block: Progress | None = None,
) -> dict[Key, reconstruction.Quantized]:
    """Compress the (layer, name, linear module) matrices of a private copy, block by block, with a calibrated
    method; the copy must hold the original weights when called. Returns the codes and scales of each quantized
    matrix (GPTQ), by (layer, name).

    One pass of the model records the arguments of every block; then each block runs twice on the hidden states
    that the compressed blocks before it produced: once to read its layers' inputs, once after its compression to
    give the next block's inputs. Layers that read the same tensor (q, k and v; gate and up) share its statistics
    and are compressed in one sweep.
    """
    calls = block_calls(twin, np.asarray(calibration, dtype=np.int64))
    layers = blocks(twin)
    hidden = calls[0][0][0]
    quantized: dict[Key, reconstruction.Quantized] = {}
    for index, block in enumerate(layers):
        args, kwargs = calls[index]
        here = [(name, module) for layer, name, module in matrices if layer == index]
        by_input: dict[int, tuple[torch.Tensor, reconstruction.InputStatistics, list[str]]] = {}  # by id(input)

        def reader(name: str) -> Callable[[torch.nn.Module, tuple], None]:
            def add(module: torch.nn.Module, inputs: tuple) -> None:
                x = inputs[0]  # kept in by_input while the block runs, so that its id stays unique
                if id(x) not in by_input:
                    # The OBS sweeps in float32, as the papers run them: twice as fast here as float64, and the
                    # outputs' error moves by 1e-4 of itself (reconstruction keeps float64 for exactness tests).
                    by_input[id(x)] = (x, reconstruction.InputStatistics(torch.float32), [])
                    by_input[id(x)][1].add(x)
                if name not in by_input[id(x)][2]:
                    by_input[id(x)][2].append(name)

            return add

        with twin.lock, torch.inference_mode():
            if here:
                with observing(pre={module: reader(name) for name, module in here}):
                    block(hidden, *args[1:], **kwargs)
                modules = dict(here)
                for _, stats, names in by_input.values():
                    # Matrices that read one input (q, k and v; gate and up) are compressed stacked, in one sweep.
                    weights = [modules[name].get_parameter("weight") for name in names]
                    rows = [int(w.shape[0]) for w in weights]
                    done = _compress(torch.cat([w.detach() for w in weights]), stats, compression, rows)
                    if isinstance(done, reconstruction.Quantized):
                        parts = done.split(rows)
                        quantized |= {(index, name): part for name, part in zip(names, parts, strict=True)}
                        done = torch.cat([part.weight(weights[0].dtype) for part in parts])
                    for weight, part in zip(weights, done.split(rows), strict=True):
                        weight.copy_(part)
                by_input.clear()
            hidden = block_output(block(hidden, *args[1:], **kwargs))
        if on_block is not None:
            on_block(index + 1, len(layers))
    return quantized
