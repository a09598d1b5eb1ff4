"""The home page: choose a model and a text; every view then shows what happens inside on that choice."""

from __future__ import annotations

import streamlit as st

from probes.long_text import SOURCE, long_text
from probes.text import Encoded, TextTooLong, encode, long_limit, max_characters, truncate
from runtime.builtin import BUILTINS, DERIVED
from runtime.models import info, title
from runtime.settings import settings
from runtime.untrained import twin_names
from ui import state
from ui.markdown import literal
from ui.models import compute_engine, show_error
from ui.scaffold import Setting, start
from views.registry import views
from viz.tokens import token_chips_html

OTHER = "Other: a Hugging Face id or a local folder…"
# The views whose probes hold no (n, n) array of floats, so that they read texts up to the model's context.
LONG_VIEWS = "the Attention, Head atlas, Structured attention, Attention sinks and Massive activations views"

page = start(__file__, export=False)
TITLES = {name: title(name) for name in [*BUILTINS, *DERIVED, *twin_names(list(BUILTINS))]}
current = state.model_name()
page.settings(  # the choice itself lives in ui.state (and the URL); these are its widgets
    Setting("model", "choice", current if current in TITLES else OTHER, options=[*TITLES, OTHER], url=False),
    Setting("other", "str", "" if current in TITLES else current, url=False),
    Setting("text", "str", state.text(), length=max_characters(settings().long_tokens), url=False),
)


def _model_changed() -> None:
    picked = page.value("model")
    state.choose(model=page.value("other") if picked == OTHER else picked)


left, right = st.columns([1, 2])
with left:
    page.widget("model", st.selectbox, "Model", format_func=lambda n: TITLES.get(n) or n, on_change=_model_changed)
    if page.value("model") == OTHER:
        page.widget(
            "other",
            st.text_input,
            "Hugging Face id or local folder",
            placeholder="e.g. HuggingFaceTB/SmolLM2-360M or /data/models/my-model",
            on_change=_model_changed,
        )
with right:
    page.widget(
        "text",
        st.text_area,
        "Text",
        height=140,
        on_change=lambda: state.choose(new_text=page.value("text")),
        help=f"Up to {settings().max_tokens:,} tokens for every view (LMSCOPE_MAX_TOKENS); {LONG_VIEWS} read up to the "
        "model's context (LMSCOPE_LONG_TOKENS). Ctrl+Enter applies.",
    )

name = state.model_name()
if not name:
    st.info("Type a Hugging Face id or a local model folder, then press Enter.")
    st.stop()
handle = page.handle

summary = info(handle)
st.subheader(literal(summary.title))  # a local model's title and source are its path, as the user typed it
cols = st.columns(5)
cols[0].metric("Layers", summary.n_layers)
cols[1].metric("Query heads", summary.n_heads)
cols[2].metric("Key/value heads", summary.n_kv_heads)
cols[3].metric("Parameters", f"{summary.n_parameters / 1e6:.1f} M")
cols[4].metric("Load time", f"{handle.load_seconds:.1f} s")
placed = "the cluster's workers (no weights here)" if summary.device == "meta" else summary.device
st.caption(
    f"{summary.architecture} · {literal(summary.source)} · {summary.dtype} on {placed} · fingerprint "
    f"`{summary.fingerprint}` · "
    f"{compute_engine()}"
)

limit = long_limit(handle)
CHIPS = 2000  # tokens drawn as chips; a long text's others are counted


def _use(text: str) -> None:
    state.choose(new_text=text)
    page.set("text", text)


def _truncate() -> None:
    _use(truncate(handle, page.text, limit))


with right:
    st.button(
        f"Try a long text ({limit:,} tokens)",
        icon=":material/article:",
        help=f"The first {limit:,} tokens of {SOURCE}: {LONG_VIEWS} read them whole.",
        on_click=lambda: _use(truncate(handle, long_text(), limit)),
    )


def _encoded() -> Encoded:
    """The text's tokens; a text over the limit is offered a truncation."""
    try:
        return encode(handle, page.text, limit)
    except TextTooLong as exc:
        show_error(exc)
        st.button(f"Truncate to the first {limit} tokens", on_click=_truncate)
        st.stop()


encoded = page.or_stop(_encoded)
n = len(encoded.tokens)
if n > settings().max_tokens:
    st.info(
        f"This text has {n:,} tokens. {LONG_VIEWS[0].upper()}{LONG_VIEWS[1:]} read all of it (none of them keeps an n x n "
        f"map of floats); the other views read at most {settings().max_tokens:,} tokens (LMSCOPE_MAX_TOKENS) and say so."
    )
shown = f"the first {CHIPS:,} of {n:,}" if n > CHIPS else f"{n}"
st.markdown(f"**Tokens** ({shown}; hover for position and id)")
st.html(token_chips_html(encoded.tokens[:CHIPS], encoded.token_ids[:CHIPS]))

st.divider()
st.markdown("**Views**")
for view in views():
    st.page_link(view.page, label=f"{view.title}: {view.summary}", icon=f":material/{view.icon}:")
