"""LoRA against full fine-tuning: the chosen decoder fine-tuned twice on a bundled task, and how low-rank each update
W − W0 is (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models")."""

from __future__ import annotations

import streamlit as st

from probes import finetune
from probes.finetune_train import BATCH_SIZE, LEARNING_RATES, WARMUP_SHARE
from runtime import limits
from ui.models import probe_with_progress, result_cache
from ui.scaffold import Need, Setting, start
from viz.finetune import energy_figure, loss_figure, spectrum_figure, update_rows

page = start(__file__, Need.DECODER)
handle = page.handle
names = finetune.matrix_names(handle)
page.settings(
    Setting("rank", "int", finetune.DEFAULT_RANK, lower=1, upper=limits.FINETUNE_RANK),
    Setting("steps", "int", finetune.DEFAULT_STEPS, lower=1, upper=limits.FINETUNE_STEPS),
    Setting("matrix", "choice", names[len(names) // 2], options=names),
)
controls = st.columns([1, 1, 3])
rank = page.widget(
    "rank",
    controls[0].number_input,
    "LoRA rank r",
    help="The rank of LoRA's B·A, and the r at which the full update's energy and overlap are measured.",
)
steps = page.widget(
    "steps",
    controls[1].number_input,
    "Steps",
    help=f"Training steps of each run, {BATCH_SIZE} sentences each. The default {finetune.DEFAULT_STEPS} "
    "train both runs in about 75 s on 2 idle cores (SmolLM2); each run is stored, so it trains once.",
)
matrix = page.widget("matrix", controls[2].selectbox, "Matrix", help="The adapted matrix whose spectrum to draw.")

done = probe_with_progress(
    "Fine-tuning two copies of the model (LoRA, then full; stored for next time), steps",
    lambda progress: finetune.compare(handle, result_cache(), rank, steps, on_progress=progress),
)
result = done.value
lora, full = result.lora, result.full
page.show(loss_figure(result), "loss", f"{handle.name}-finetune-loss")
st.caption(
    f"The task: {result.task}. {result.n_train} training sentences write each fact in three templates; the "
    f"{result.n_heldout} held-out sentences write each in another, unseen template, so the held-out loss falls "
    "only if a run learns the facts. Both runs see the same batches in the same order, with the same schedule "
    f"(linear warm-up over the first {WARMUP_SHARE:.0%} of the steps, then linear decay), AdamW without weight "
    f"decay. Only the peak learning rate differs, as is usual: {LEARNING_RATES['lora']:g} for LoRA, whose "
    f"adapters start from zero, and {LEARNING_RATES['full']:g} for full fine-tuning. Trained in "
    f"{lora.train_seconds:.0f} s (LoRA) and {full.train_seconds:.0f} s (full)"
    + (" · from the result cache" if done.hit else "")
)
page.show(spectrum_figure(result, matrix), "spectrum", f"{handle.name}-finetune-spectrum")
st.markdown(
    f"LoRA adapts the q and v projections of every block at rank {rank} (lora_alpha = 2r, as peft implements it), "
    "and the same matrices are measured in the full run, which trains every parameter. For LoRA, ΔW is the merged "
    "scaling · B·A; for full fine-tuning, the trained weight minus the original. The **numerical rank** counts "
    "singular values above σ₁ · max(out, in) · ε of float32 (numpy's `matrix_rank` tolerance): LoRA's is exactly r, "
    "its later values are rounding noise. The **effective rank** is Roy and Vetterli's exp of the entropy of σ / Σσ "
    "(values under that tolerance left out). The **subspace similarity** `φ(i, i) = ‖U_LoRA,iᵀ U_full,i‖²_F / i` "
    "(Hu et al., eq. 4) is 1 when the top-i left singular vectors of the two updates span the same space, and i / "
    "out on average for random subspaces."
)
page.show(energy_figure(result), "energy", f"{handle.name}-finetune-energy")
st.markdown(
    "Read it honestly: full fine-tuning's update is not low-rank in the strict sense (its numerical rank is full), "
    "but most of its energy sits in a few directions, and LoRA's rank-r update points partly the same way. This is "
    "one small task and a few dozen steps; longer training, other tasks or other learning rates change the numbers."
)
st.dataframe(update_rows(result), hide_index=True, height=400)
