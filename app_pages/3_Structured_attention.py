"""Structured attention: sliding, dilated, global and block-sparse masks beside a head's real attention, the loss
of the text when every layer of the model is limited to a sliding window, with and without sink tokens, and every
pattern's loss against the attention budget it keeps."""

from __future__ import annotations

import streamlit as st

from probes import attention, attention_cost, structured
from runtime import limits
from ui.head_choice import grid_click, head_inputs
from ui.models import probe_or_stop, probe_with_progress, result_cache
from ui.scaffold import Need, Setting, start
from viz.attention import head_grid
from viz.attention_cost import attention_cost_figure
from viz.structured import METRICS, extra_loss_by_token, loss_by_budget, loss_by_window, mask_panel

page = start(__file__, Need.MODEL, Need.TEXT)
handle = page.handle
cached = probe_or_stop(
    "Running the model and reading every head's attention...",
    lambda: attention.run(handle, page.text, result_cache()),
)
result = cached.value
n = len(result.tokens)
# Text settings are parsed, with a clear message, where they are used.
page.settings(
    Setting("window", "int", min(8, n - 1), lower=1, upper=n - 1),
    Setting("dilation", "int", 2, lower=1, upper=n - 1),
    Setting("sinks", "int", min(4, n - 1), lower=0, upper=n - 1),
    Setting("global", "str", str(n // 2)),
    Setting("random_blocks", "int", 1, lower=0, upper=limits.RANDOM_BLOCKS),
    Setting("seed", "int", 0, lower=0, upper=limits.SEED),
    Setting("patterns", "multi", list(structured.PATTERNS), options=list(structured.PATTERNS)),
    Setting("lengths", "str", ", ".join(map(str, attention_cost.DEFAULT_LENGTHS))),
    Setting("cost_window", "int", attention_cost.DEFAULT_WINDOW, lower=1, upper=limits.COST_CONTEXT),
    Setting("cost", "bool", False),
    Setting("windows", "str", ", ".join(str(w) for w in structured.DEFAULT_WINDOWS if w < n) or "1"),
    Setting("metric", "choice", "nll", options=list(METRICS)),
)

controls = st.columns(7)
layer, head = head_inputs(page, result.n_layers, result.n_heads, controls[0], controls[1])
window = page.widget(
    "window", controls[2].number_input, "Window w", help="Each query sees itself and the w - 1 tokens before it."
)
dilation = page.widget(
    "dilation",
    controls[3].number_input,
    "Dilation d",
    help="The dilated window sees q, q-d, q-2d, ...: w keys, d apart.",
)
global_text = page.widget(
    "global",
    controls[4].text_input,
    "Global positions g",
    help=f"Token positions (0 to {n - 1}, commas between) that see every earlier token and are seen by every later one.",
)
random_blocks = page.widget(
    "random_blocks",
    controls[5].number_input,
    "Random blocks r",
    help="Block-sparse (BigBird): the text is cut into blocks of w tokens; a query sees its own block, the one "
    "before, r earlier blocks drawn at random for its block, and the global tokens.",
)
sinks = page.widget(
    "sinks",
    controls[6].number_input,
    "Sink tokens k",
    help="The first k tokens stay visible to every query (StreamingLLM's attention sinks).",
)
windows_text, metric, seed = page.value("windows"), page.value("metric"), page.value("seed")
global_positions = page.or_stop(lambda: tuple(structured.parse_ints(global_text, "global positions")))
structure = structured.Structure(dilation, global_positions, random_blocks, seed)

view = probe_or_stop(
    "Measuring how much of every head's attention each mask keeps...",
    lambda: structured.mask_view(handle, page.text, window, structure, sinks, result_cache()),
).value

page.show(mask_panel(result, view, layer, head), "masks", f"{result.model}-masks-L{layer}-H{head}-w{window}")

st.markdown(
    "**Every head under one mask.** Heads whose attention is local keep almost everything; heads that look far back "
    "(or at the first token) lose most of it. Click a cell to show that head above."
)
shown = st.selectbox("Mask", range(1, len(view.titles)), format_func=lambda i: view.titles[i], key=page.key("mask"))
page.show(
    head_grid(view.kept[shown], f"Share of each head's attention kept by: {view.titles[shown]}", "kept", zmax=1.0),
    "grid",
    f"{result.model}-kept-mass",
    on_select=grid_click(page),
    selection_mode="points",
)

st.divider()
st.subheader("Applied for real: the loss under a sliding window")
page.require(Need.DECODER, "the loss under a window (the masks above still show what each one keeps)")
also_sinks = f", then once more per window with the first {sinks} tokens kept visible (sink tokens k)" if sinks else ""
st.markdown(
    "The model runs once with full attention and once per window, with the window imposed on **every layer** "
    f"(on top of the causal mask){also_sinks}."
)
left, right = st.columns([3, 1])
page.widget(
    "windows", left.text_input, "Window sizes to sweep", help=f"Whole numbers from 1 to {n - 1}, commas between."
)
page.widget(
    "metric",
    right.radio,
    "Show",
    format_func=lambda m: "mean NLL" if m == "nll" else "perplexity",
    horizontal=True,
)
sweep = probe_with_progress(
    "Running the model once per window, forward passes",
    lambda progress: structured.window_sweep(
        handle, page.text, structured.parse_ints(windows_text, "window sizes"), sinks, result_cache(), progress
    ),
).value

page.show(loss_by_window(sweep, metric), "loss", f"{sweep.model}-loss-by-window-k{sweep.sinks}")
rows = sweep.rows()
formats = {k: st.column_config.NumberColumn(format="%.3f" if "NLL" in k else "%.1f") for k in rows[0] if k != "window"}
st.dataframe(rows, hide_index=True, column_config=formats)
swept = [int(w) for w in sweep.windows]
page.settings(
    Setting("token_window", "choice", window if window in swept else swept[len(swept) // 2], options=swept, url=False)
)
picked = page.widget("token_window", st.selectbox, "Window to inspect token by token")
page.show(extra_loss_by_token(sweep, picked), "tokens", f"{sweep.model}-extra-loss-w{picked}-k{sweep.sinks}")

st.divider()
st.subheader("Every pattern at an equal budget")
st.markdown(
    "Each pattern imposed on every layer at each size above (the window; for block-sparse, the block), without and "
    "with the sink tokens, and drawn against its **attention budget**: the share of the n(n+1)/2 causal query-key "
    "pairs it keeps. At an equal budget, the pattern with the lower loss spends its attention better. Dilation, "
    "global positions and random blocks are the ones set at the top of the page."
)
left, right = st.columns([3, 1])
chosen = page.widget(
    "patterns",
    left.multiselect,
    "Patterns",
    format_func=structured.PATTERNS.get,
    help="Each costs a forward pass per size.",
)
page.widget("seed", right.number_input, "Seed of the random blocks")
budgets = probe_with_progress(
    "Running the model once per pattern and size, forward passes",
    lambda progress: structured.pattern_sweep(
        handle,
        page.text,
        chosen,
        structured.parse_ints(windows_text, "window sizes"),
        sinks,
        structure,
        result_cache(),
        progress,
    ),
).value
page.show(loss_by_budget(budgets, metric), "budget", f"{budgets.model}-loss-by-budget-k{budgets.sinks}")
budget_rows = budgets.rows()
st.dataframe(
    budget_rows,
    hide_index=True,
    column_config={
        "budget": st.column_config.NumberColumn(format="percent"),
        "mean NLL": st.column_config.NumberColumn(format="%.3f"),
        "extra NLL": st.column_config.NumberColumn(format="%+.3f"),
    },
)

st.divider()
st.subheader("What full attention costs")
st.markdown(
    "Full attention scores every earlier token for every token: its compute grows as n². One forward pass over n "
    "tokens of the corpus, timed on the server that serves this page, with the attention computed three ways: the "
    "model's own **eager** attention, which stores every head's n x n scores; the same full attention a **chunk** of "
    "512 queries at a time, which needs memory only for a chunk's scores (FlashAttention's idea) but still does n² "
    "work; and a **sliding window** of w tokens computed the same way, linear in n in both. The passes run in a "
    "process of their own, once per machine and setting."
)
cost_controls = st.columns([2, 1, 2], vertical_alignment="bottom")
lengths_text = page.widget(
    "lengths",
    cost_controls[0].text_input,
    "Context lengths (tokens)",
    help=f"Up to {limits.COST_LENGTHS} lengths, each from 16 to "
    f"{min(handle.context_length or limits.COST_CONTEXT, limits.COST_CONTEXT):,} for this model, commas between.",
)
cost_window = page.widget("cost_window", cost_controls[1].number_input, "Window w")
if page.widget("cost", cost_controls[2].toggle, "Measure on this server (minutes the first time)"):
    lengths = page.or_stop(lambda: structured.parse_ints(lengths_text, "context lengths"))
    cost = probe_with_progress(
        "Timing forward passes, measurements",
        lambda progress: attention_cost.measure(handle, lengths, cost_window, result_cache(), progress),
    ).value
    page.show(attention_cost_figure(cost), "cost_chart", f"{handle.name}-attention-cost")
    st.caption(
        f"Measured on {cost.host}, {cost.device}, {cost.threads} threads, at {cost.measured_at} (UTC); lengths up to "
        f"{attention_cost.SHORT:,} tokens are the best of {attention_cost.REPEATS} passes, longer ones of "
        f"{attention_cost.LONG_REPEATS}. Peak memory: the "
        "process's resident memory above what it held before the pass. Where the eager scores would not fit in half "
        "the free memory, the eager pass is not run. Other work on the server slows the passes it shares the cores "
        "with."
    )
