"""The limits on every count a user can set, in a widget, a URL or on the command line.

The probes check them before any work starts, so the dashboard, its links, the CLI and the lecture export obey
the same limits; a request over one gets a plain message. The README's "Hosting a class" lists them. Text
length has its own limit, LMSCOPE_MAX_TOKENS (`probes.text`).
"""

from __future__ import annotations

from collections.abc import Sized

from runtime.errors import LmscopeError

WINDOWS = 16  # window sizes in one sweep (each costs a forward pass, twice with sink tokens)
GLOBAL_POSITIONS = 64  # always-visible positions of a global + sliding mask
RANDOM_BLOCKS = 16  # random earlier blocks each query block of a block-sparse mask sees
SWEEP_PASSES = 65  # forward passes of one sweep over patterns and sizes (full attention, then one per setting)
SPARSITIES = 12  # unstructured sparsities in one pruning-vs-quantization run
BIT_WIDTHS = 15  # bit widths in one run (2 to 16)
RANKS = 16  # ranks in one truncation sweep
CALIBRATION_SEQUENCES = (
    64  # calibration sequences of Wanda, SparseGPT and GPTQ (each setting reads them once per block)
)
CALIBRATION_LENGTH = 512  # tokens per calibration sequence
COST_TOKEN_COUNTS = 4  # batch sizes in one timing of sparse products
COST_TOKENS = 4096  # token vectors in one timed product
COST_LENGTHS = 8  # context lengths in one timing of attention (each a forward pass, three ways)
COST_CONTEXT = 32768  # tokens of the longest timed forward pass (and no more than the model's context)
CORPUS_SENTENCES = 2000  # sentences in one corpus pass
CORPUS_TOKENS = 256  # tokens per sentence when attention is averaged over sentences (maps are (n, n) per head)
PASTED_CHARACTERS = 200_000  # characters of sentences pasted for a corpus view
LOTTERY_ROUNDS = 20  # pruning rounds of the lottery-ticket network (20% each: 1% of the weights left)
LOTTERY_SEEDS = 10  # seeds, each a whole run of every round
HEAD_DROP_SEEDS = 10  # random orders of head removal in one run (each costs about 20 forward passes)
TOY_KEYS = 1024  # keys of the softmax toy on the sinks page
TOY_SPREAD = 5.0  # standard deviation of its other logits
SINK_NORM_TOKENS = 1024  # tokens of the sink-norm analysis (each layer's whole (n, n) maps and values are read)
LENS_TOKENS = 512  # tokens the logit lens reads (each layer's readout is a pass through the vocabulary)
WORD_CHARACTERS = 40  # characters of a word decomposed into concept atoms
WORD_TOKENS = 8  # tokens of that word
WORD_ATOMS = 16  # atoms in one word's sparse code
FINETUNE_RANK = 64  # LoRA's rank r (and the r that full fine-tuning's update is measured at)
FINETUNE_STEPS = 100  # steps of each fine-tuning run (both runs of 100 steps: about 3 minutes of 2 cores on SmolLM2)
THRESHOLD = 1e9  # the largest massive-activation threshold, of |h| or of its ratio to the median (from 0)
SEED = 2**31 - 1  # the largest random seed a user can set (every generator lmscope seeds takes it)
FINETUNE_PARAMETERS = 1_000_000_000  # parameters of a model fine-tuned in full: each costs about 16 bytes (Adam)


def check_count(values: Sized, limit: int, what: str) -> None:
    """Refuse more than `limit` values in one request."""
    if len(values) > limit:
        raise LmscopeError(f"At most {limit} {what} in one request; got {len(values)}. Choose fewer.")


def check_range(value: int, low: int, high: int, what: str) -> None:
    """Refuse a whole number outside [low, high]."""
    if not low <= value <= high:
        raise LmscopeError(f"The {what} must be from {low} to {high}; got {value}.")
