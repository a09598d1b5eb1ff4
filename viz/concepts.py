"""Figures of concepts as sparse combinations: a word drawn as the lecture's equation, word = a1·[atom] + a2·[atom]
+ ... + residual, and the atoms' coefficients."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from results.concepts import ConceptDictionary, WordConcepts
from viz.theme import themed, wrap

POSITIVE = "#2e6fb7"
NEGATIVE = "#c0392b"
RESIDUAL = "#9e9e9e"
SHOWN_LABELS = 3
EQUATION_CHARACTERS = 110  # per line of the written-out equation
NARROW = 0.1  # blocks narrower than this share of the row are drawn without text


def source_name(found: ConceptDictionary) -> str:
    """What the atoms were learned on, in two words."""
    return "token embeddings" if found.layer is None else f"layer {found.layer}'s output"


def equation(word: WordConcepts, found: ConceptDictionary) -> str:
    """The word as its sparse code, written out: "apple = 0.41·[ibm, microsoft] − 0.22·[...] + 0.84·residual"."""
    terms = []
    for i, (atom, a) in enumerate(zip(word.atoms, word.coefficients)):
        sign = ("−" if a < 0 else "") if i == 0 else (" − " if a < 0 else " + ")
        terms.append(f"{sign}{abs(a):.2f}·[{found.label(int(atom), 2)}]")
    return f"{word.word} = {''.join(terms)} + {word.reconstruction_error:.2f}·residual"


def _atom_name(found: ConceptDictionary, atom: int) -> str:
    return f"#{atom} {found.label(atom, SHOWN_LABELS)}"


def concept_figure(word: WordConcepts, found: ConceptDictionary) -> go.Figure:
    """Top: the word's unit vector as a row of blocks, one per atom, sized by |coefficient|, and the residual sized
    by its norm. Below: the coefficients, each atom named by the tokens that use it most."""
    names = [_atom_name(found, int(atom)) for atom in word.atoms]
    fig = make_subplots(
        rows=2,
        cols=1,
        row_heights=[0.22, 0.78],
        vertical_spacing=0.14,
        subplot_titles=("", "Coefficients of the atoms (the word and the atoms are unit vectors)"),
    )
    colours = [NEGATIVE if a < 0 else POSITIVE for a in word.coefficients]
    blocks = [
        (f"{a:+.2f}<br>{found.labels[int(atom)][0] if found.labels[int(atom)] else ''}", abs(float(a)), colour, name)
        for atom, a, colour, name in zip(word.atoms, word.coefficients, colours, names)
    ]
    blocks.append((f"{word.reconstruction_error:.2f}<br>residual", word.reconstruction_error, RESIDUAL, "residual r"))
    parts = [*word.shares.tolist(), word.residual_share]
    total = sum(size for _, size, _, _ in blocks)
    for (text, size, colour, name), part in zip(blocks, parts):
        text = text if size >= NARROW * total else ""  # a narrow block's numbers are in the bars below and on hover
        fig.add_trace(
            go.Bar(
                x=[size],
                y=[word.word],
                orientation="h",
                marker={"color": colour, "line": {"color": "white", "width": 2}},
                text=[text],
                textposition="inside",
                insidetextanchor="middle",
                textangle=0,
                textfont={"color": "white"},
                name=name,
                showlegend=False,
                hovertemplate=f"{name}<br>size %{{x:.3f}}<br>part of |x|²: {part:.3f}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.add_trace(
        go.Bar(
            x=[*word.coefficients.tolist(), word.reconstruction_error],
            y=[*names, "residual |r|"],
            orientation="h",
            marker={"color": [*colours, RESIDUAL]},
            text=[f"{v:+.2f}" for v in word.coefficients] + [f"{word.reconstruction_error:.2f}"],
            textposition="outside",
            cliponaxis=False,
            showlegend=False,
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        ),
        row=2,
        col=1,
    )
    span = float(max(np.abs(word.coefficients).max(initial=0.0), word.reconstruction_error))
    fig.update_xaxes(visible=False, row=1, col=1)
    fig.update_yaxes(tickfont={"size": 16}, row=1, col=1)
    fig.update_xaxes(
        title_text="coefficient",
        range=[min(0.0, float(word.coefficients.min(initial=0.0))) - 0.15 * span, 1.15 * span],
        zeroline=True,
        row=2,
        col=1,
    )
    fig.update_yaxes(autorange="reversed", row=2, col=1)
    lines = wrap(equation(word, found), EQUATION_CHARACTERS)
    fig.update_layout(
        barmode="stack",
        uniformtext={"minsize": 10, "mode": "hide"},
        height=380 + 40 * len(blocks) + 20 * len(lines),
        margin={"t": 120 + 20 * len(lines)},
    )
    return themed(
        fig,
        f"“{word.word}” as {len(word.atoms)} of {found.n_atoms} atoms: reconstruction error "
        f"{word.reconstruction_error:.2f}",
        "<br>".join(lines)
        + f"<br>Atoms learned on {source_name(found)} of {found.model}; with {found.n_nonzero} atoms, held-out "
        f"vectors keep a mean error of {found.heldout_error:.2f}",
    )


def atom_rows(found: ConceptDictionary) -> list[dict[str, object]]:
    """One table row per atom: its tokens and how many fitted vectors use it, most used first."""
    order = np.argsort(-found.usage, kind="stable")
    return [
        {"atom": int(atom), "tokens": ", ".join(found.labels[atom]), "vectors using it": int(found.usage[atom])}
        for atom in order
    ]
