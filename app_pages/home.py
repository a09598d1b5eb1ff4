"""The home page: choose a model and a text; every view then shows what happens inside on that choice."""

from __future__ import annotations

import streamlit as st

from probes.text import TextTooLong, encode, max_characters, truncate
from runtime.builtin import BUILTINS, DERIVED
from runtime.errors import LmscopeError
from runtime.models import info
from runtime.settings import settings
from ui import state
from ui.layout import page
from ui.models import compute_engine, current_model
from views.registry import views
from viz.tokens import token_chips_html

OTHER = "Other: a Hugging Face id or a local folder…"

page(
    "lmscope",
    "See inside language models: attention, activations, experts and weights, live on your text.",
    export=False,
)

TITLES = {name: spec.title for name, spec in {**BUILTINS, **DERIVED}.items()}
current = state.model_name()
if "w_model" not in st.session_state:
    st.session_state["w_model"] = current if current in TITLES else OTHER
if "w_model_other" not in st.session_state:
    st.session_state["w_model_other"] = "" if current in TITLES else current
if "w_text" not in st.session_state:
    st.session_state["w_text"] = state.text()


def _model_changed() -> None:
    picked = st.session_state["w_model"]
    state.choose(model=st.session_state["w_model_other"] if picked == OTHER else picked)


left, right = st.columns([1, 2])
with left:
    st.selectbox(
        "Model",
        [*TITLES, OTHER],
        key="w_model",
        format_func=lambda n: TITLES.get(n) or n,
        on_change=_model_changed,
    )
    if st.session_state["w_model"] == OTHER:
        st.text_input(
            "Hugging Face id or local folder",
            key="w_model_other",
            placeholder="e.g. HuggingFaceTB/SmolLM2-360M or /data/models/my-model",
            on_change=_model_changed,
        )
with right:
    st.text_area(
        "Text",
        key="w_text",
        height=140,
        max_chars=max_characters(settings().max_tokens),
        on_change=lambda: state.choose(new_text=st.session_state["w_text"]),
        help=f"Up to {settings().max_tokens} tokens (LMSCOPE_MAX_TOKENS). Ctrl+Enter applies.",
    )

name = state.model_name()
if not name:
    st.info("Type a Hugging Face id or a local model folder, then press Enter.")
    st.stop()
handle = current_model()

summary = info(handle)
st.subheader(summary.title)
cols = st.columns(5)
cols[0].metric("Layers", summary.n_layers)
cols[1].metric("Query heads", summary.n_heads)
cols[2].metric("Key/value heads", summary.n_kv_heads)
cols[3].metric("Parameters", f"{summary.n_parameters / 1e6:.1f} M")
cols[4].metric("Load time", f"{handle.load_seconds:.1f} s")
placed = "the cluster's workers (no weights here)" if summary.device == "meta" else summary.device
st.caption(
    f"{summary.architecture} · {summary.source} · {summary.dtype} on {placed} · fingerprint `{summary.fingerprint}` · "
    f"{compute_engine()}"
)

limit = settings().max_tokens
try:
    encoded = encode(handle, state.text(), limit)
except TextTooLong as exc:
    st.error(str(exc))

    def _truncate() -> None:
        short = truncate(handle, state.text(), limit)
        state.choose(new_text=short)
        st.session_state["w_text"] = short

    st.button(f"Truncate to the first {limit} tokens", on_click=_truncate)
    st.stop()
except LmscopeError as exc:
    st.error(str(exc))
    st.stop()

st.markdown(f"**Tokens** ({len(encoded.tokens)}; hover for position and id)")
st.html(token_chips_html(encoded.tokens, encoded.token_ids))
state.sync_url()

st.divider()
st.markdown("**Views**")
for view in views():
    st.page_link(view.page, label=f"{view.title}: {view.summary}", icon=f":material/{view.icon}:")
