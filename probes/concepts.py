"""Concepts as sparse combinations (Arora et al. 2018): a dictionary of atoms learned on a model's word vectors
with scikit-learn's MiniBatchDictionaryLearning, and any word's vector written as a few of them plus a residual.

The rows are the input embeddings of the model's word tokens (alphabetic, three letters or more) or, for a layer,
that block's output at every token of the bundled corpus but the first (the attention sink, with its massive
activations) and special tokens. Rows are centred and scaled to unit length; codes are OMP with a fixed number of
non-zeros. A word is read as it appears after a space: its embedding is the mean of its tokens' embeddings; at a
layer, the block's output at its last token with the word read after a short lead-in (so it is not the first token).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.decomposition import MiniBatchDictionaryLearning, sparse_encode

from probes import corpus
from probes.batches import Progress, batches, by_length
from probes.residual import block_output
from probes.text import clean, token_strings
from results.concepts import ConceptDictionary, WordConcepts
from runtime import limits
from runtime.cache import Cached, ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.placement import as_numpy
from runtime.probe import CachedProbe

VERSION = 1
NAME = "concepts-dictionary"
WORD_NAME = "concepts-word"
# The fit: 256 atoms, 8-sparse codes, 5 passes over at most 8000 rows (about 20 s of CPU on a 576-wide model).
N_ATOMS = 256
NONZEROS = 8
ALPHA = 0.25  # the L1 weight of the codes while the atoms are learned (LARS)
EPOCHS = 5
BATCH = 256
FIT_ROWS = 8000
HELDOUT_ROWS = 1000
SEED = 0
LABELS = 5  # tokens kept per atom
MIN_LETTERS = 3
DEFAULT_WORD = "apple"
DEFAULT_ATOMS = 5
LEAD_IN = "A word:"
_MARKERS = "Ġ▁"  # byte-level BPE's and SentencePiece's word-start marks


def word_form(piece: str) -> str:
    """A vocabulary piece without its word-start mark ("Ġapple" -> "apple")."""
    return piece.lstrip(_MARKERS).strip()


def _starts_word(piece: str, marked: bool) -> bool:
    """A piece that begins a word: one with the word-start mark in a vocabulary that marks them, otherwise
    (WordPiece) one that is not a "##" continuation."""
    return piece[0] in _MARKERS if marked else not piece.startswith("##")


def word_token_ids(handle: ModelHandle) -> np.ndarray:
    """The vocabulary's word tokens as they follow a space: word starts that are alphabetic ASCII of MIN_LETTERS
    or more once the mark is dropped (fragments of longer words left out)."""
    pieces = [p or "" for p in handle.tokenizer.convert_ids_to_tokens(list(range(_vocabulary_rows(handle))))]
    marked = any(p[:1] in tuple(_MARKERS) for p in pieces)
    kept = [
        i
        for i, piece in enumerate(pieces)
        if piece
        and _starts_word(piece, marked)
        and len(form := word_form(piece)) >= MIN_LETTERS
        and form.isascii()
        and form.isalpha()
    ]
    return np.asarray(kept, dtype=np.int64)


def _vocabulary_rows(handle: ModelHandle) -> int:
    """Rows of the embedding matrix that are tokens of the tokenizer (Gemma pads its matrix beyond them)."""
    return min(len(handle.tokenizer), _embeddings(handle).shape[0])


def _embeddings(handle: ModelHandle) -> torch.Tensor:
    weight = getattr(handle.model.get_input_embeddings(), "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise LmscopeError(f"Model '{handle.name}' has no input embedding matrix for lmscope to read.")
    return weight


def embedding_rows(handle: ModelHandle, token_ids: np.ndarray) -> np.ndarray:
    """Rows of the input embedding matrix, (n, d) float64."""
    with torch.inference_mode():
        rows = _embeddings(handle)[torch.as_tensor(token_ids, dtype=torch.long, device=handle.device)]
        return as_numpy(rows).astype(np.float64)


def unit_rows(vectors: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Vectors centred and scaled to unit length, (n, d) float64: what the atoms code."""
    centred = np.asarray(vectors, dtype=np.float64) - center
    norms = np.linalg.norm(centred, axis=-1, keepdims=True)
    return centred / np.where(norms > 0, norms, 1.0)


def sparse_codes(rows: np.ndarray, atoms: np.ndarray, n_nonzero: int) -> np.ndarray:
    """OMP codes (n, atoms) of unit rows with at most n_nonzero non-zeros each."""
    return sparse_encode(
        np.asarray(rows, dtype=np.float64),
        np.asarray(atoms, dtype=np.float64),
        algorithm="omp",
        n_nonzero_coefs=n_nonzero,
    )


def relative_errors(rows: np.ndarray, codes: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """|x - code @ atoms| / |x| per row."""
    rows = np.asarray(rows, dtype=np.float64)
    residual = rows - codes @ np.asarray(atoms, dtype=np.float64)
    return np.linalg.norm(residual, axis=-1) / np.linalg.norm(rows, axis=-1)


def _corpus_rows(
    handle: ModelHandle, layer: int, sentences: Sequence[str], on_progress: Progress | None
) -> tuple[np.ndarray, np.ndarray]:
    """One block's output at every token of the sentences but the first and special ones: (vectors, token ids)."""
    special = np.asarray(handle.tokenizer.all_special_ids, dtype=np.int64)
    vectors, ids = [], []
    for batch in batches(by_length(handle, sentences), on_progress):
        later = batch[:, 1:]
        mask = ~np.isin(later, special)
        vectors.append(block_output(handle, batch, layer)[:, 1:][mask])
        ids.append(later[mask])
    return np.concatenate(vectors), np.concatenate(ids)


def _labels(codes: np.ndarray, names: Sequence[str]) -> tuple[list[list[str]], np.ndarray]:
    """Per atom, the LABELS distinct names (case folded) of the rows with the largest positive coefficients."""
    labels, weights = [], np.full((codes.shape[1], LABELS), np.nan, dtype=np.float32)
    for atom in range(codes.shape[1]):
        column = codes[:, atom]
        seen: dict[str, None] = {}
        for row in np.argsort(-column, kind="stable"):
            if column[row] <= 0 or len(seen) == LABELS:
                break
            name = names[int(row)]
            if name.lower() not in {s.lower() for s in seen}:
                weights[atom, len(seen)] = column[row]
                seen[name] = None
        labels.append(list(seen))
    return labels, weights


def _fit(
    handle: ModelHandle,
    layer: int | None,
    source: str,
    rows: np.ndarray,
    token_ids: np.ndarray,
    names: Sequence[str],
    on_progress: Progress | None,
) -> ConceptDictionary:
    """Learn the atoms on a sample of the rows, label them, and measure the codes on the fitted and held-out rows."""
    order = np.random.default_rng(SEED).permutation(len(rows))
    n_heldout = min(HELDOUT_ROWS, len(rows) // 5)
    heldout, fitted = order[:n_heldout], order[n_heldout : n_heldout + FIT_ROWS]
    center = rows[fitted].mean(axis=0)
    train, test = unit_rows(rows[fitted], center), unit_rows(rows[heldout], center)
    steps = EPOCHS * -(-len(fitted) // BATCH)

    def report(state: dict) -> None:
        if on_progress is not None:
            on_progress(int(state["i"]) + 1, steps)

    started = time.perf_counter()
    learner = MiniBatchDictionaryLearning(
        n_components=N_ATOMS,
        alpha=ALPHA,  # pyright: ignore[reportArgumentType]  (sklearn's default 1 makes its type int)
        max_iter=EPOCHS,
        batch_size=BATCH,
        fit_algorithm="lars",
        random_state=SEED,
        callback=report,
    )
    # Warnings (lars may stop early on a batch) go to the log: silencing them here would change the filters of every
    # thread of the server; the held-out error says how good the fit is.
    learner.fit(train.astype(np.float32))
    atoms = np.asarray(learner.components_, dtype=np.float64)
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)  # the fit keeps atoms in the unit ball, a few inside it
    codes = sparse_codes(train, atoms, NONZEROS)
    # An atom and its negative are the same direction: orient each so that its strongest user has a positive weight.
    signs = np.where(codes[np.abs(codes).argmax(axis=0), np.arange(atoms.shape[0])] < 0, -1.0, 1.0)
    atoms, codes = atoms * signs[:, None], codes * signs
    held_codes = sparse_codes(test, atoms, NONZEROS)
    labels, weights = _labels(codes, [names[int(i)] for i in fitted])
    if on_progress is not None:
        on_progress(steps, steps)
    return ConceptDictionary(
        model=handle.name,
        fingerprint=handle.fingerprint,
        layer=layer,
        source=source,
        n_nonzero=NONZEROS,
        atoms=atoms.astype(np.float32),
        center=center.astype(np.float32),
        labels=labels,
        label_coefficients=weights,
        usage=(codes != 0).sum(axis=0),
        fit_token_ids=token_ids[fitted],
        n_candidates=len(rows),
        n_heldout=n_heldout,
        heldout_nonzeros=float((held_codes != 0).sum(axis=1).mean()),
        heldout_error=float(relative_errors(test, held_codes, atoms).mean()),
        fit_error=float(relative_errors(train, codes, atoms).mean()),
        fit_seconds=time.perf_counter() - started,
    )


def check_layer(handle: ModelHandle, layer: int | None) -> None:
    """Refuse a layer the model does not have (None, the embeddings, is always there)."""
    if layer is not None:
        limits.check_range(layer, 0, handle.n_layers - 1, "layer")


def _dictionary(
    handle: ModelHandle, layer: int | None, sentences: list[str] | None, on_progress: Progress
) -> ConceptDictionary:
    """Learn the dictionary of the embeddings (layer None) or of one block's output on the sentences."""
    if layer is None:
        token_ids = word_token_ids(handle)
        vectors = embedding_rows(handle, token_ids)
        names = [word_form(str(p)) for p in handle.tokenizer.convert_ids_to_tokens(token_ids.tolist())]
        source = f"the input embeddings of {len(token_ids):,} word tokens"
    else:
        vectors, token_ids = _corpus_rows(handle, layer, sentences or [], on_progress)
        names = [s.strip() or s for s in token_strings(handle, token_ids.tolist())]
        source = f"the output of block {layer} at {len(token_ids):,} tokens of the bundled corpus"
    if len(vectors) < 5 * NONZEROS:
        raise LmscopeError(f"Model '{handle.name}' has too few word vectors to learn a dictionary from.")
    return _fit(handle, layer, source, vectors, token_ids, names, on_progress)


DICTIONARY = CachedProbe(NAME, VERSION, _dictionary)


def dictionary(
    handle: ModelHandle, cache: ResultCache, layer: int | None = None, on_progress: Progress | None = None
) -> Cached[ConceptDictionary]:
    """The model's dictionary of atoms for token embeddings (layer None) or one block's output, learned once."""
    check_layer(handle, layer)
    sentences = None if layer is None else list(corpus.sentences())
    return DICTIONARY.cached(handle, cache, on_progress, layer=layer, sentences=sentences)


def word_tokens(handle: ModelHandle, word: str) -> list[int]:
    """The word's token ids as it appears after a space, checked against the limits and the vocabulary."""
    word = clean(word).strip()
    if not word:
        raise LmscopeError("Type a word to decompose.")
    if len(word) > limits.WORD_CHARACTERS:
        raise LmscopeError(f"At most {limits.WORD_CHARACTERS} characters in the word; got {len(word)}.")
    ids = handle.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise LmscopeError(f"'{word}' gives no token on {handle.name}.")
    limits.check_count(ids, limits.WORD_TOKENS, "tokens in the word")
    if handle.tokenizer.unk_token_id is not None and handle.tokenizer.unk_token_id in ids:
        raise LmscopeError(f"'{word}' is not in the vocabulary of {handle.name}: its tokenizer reads it as unknown.")
    return ids


def word_vector(handle: ModelHandle, ids: list[int], layer: int | None) -> np.ndarray:
    """The word's vector, (d,) float64: the mean embedding of its tokens, or the block's output at its last token
    read after the lead-in."""
    if layer is None:
        return embedding_rows(handle, np.asarray(ids)).mean(axis=0)
    lead = handle.tokenizer(LEAD_IN)["input_ids"]
    special = set(handle.tokenizer.all_special_ids)
    head = lead[: max(i for i, t in enumerate(lead) if t not in special) + 1]  # lead-in without trailing [SEP]
    sequence = np.asarray([*head, *ids, *lead[len(head) :]], dtype=np.int64)
    return block_output(handle, sequence, layer)[len(head) + len(ids) - 1].astype(np.float64)


def _word(
    handle: ModelHandle,
    word: str,
    ids: list[int],
    layer: int | None,
    atoms: np.ndarray,
    center: np.ndarray,
    n_atoms: int,
) -> WordConcepts:
    """The word's vector (from its token ids, at the layer) as n_atoms of the dictionary's atoms, plus a residual."""
    x = unit_rows(word_vector(handle, ids, layer), center.astype(np.float64))
    atoms = atoms.astype(np.float64)
    code = sparse_codes(x[None], atoms, n_atoms)[0]
    chosen = np.flatnonzero(code)
    chosen = chosen[np.argsort(-np.abs(code[chosen]), kind="stable")]
    return WordConcepts(
        model=handle.name,
        layer=layer,
        word=word,
        tokens=token_strings(handle, ids),
        token_ids=np.asarray(ids, dtype=np.int64),
        vector=x.astype(np.float32),
        atoms=chosen,
        coefficients=code[chosen].astype(np.float32),
        shares=(code[chosen] * (atoms[chosen] @ x)).astype(np.float32),
        reconstruction_error=float(relative_errors(x[None], code[None], atoms)[0]),
    )


WORD = CachedProbe(WORD_NAME, VERSION, _word)


def decompose(
    handle: ModelHandle, word: str, found: ConceptDictionary, n_atoms: int, cache: ResultCache
) -> Cached[WordConcepts]:
    """The word's vector written as n_atoms atoms of the dictionary (OMP) plus a residual."""
    limits.check_range(n_atoms, 1, min(limits.WORD_ATOMS, found.n_atoms), "number of atoms")
    if found.fingerprint != handle.fingerprint:
        raise LmscopeError(f"This dictionary was learned on {found.model}, not on {handle.name}.")
    ids = word_tokens(handle, word)
    return WORD.cached(
        handle,
        cache,
        word=clean(word).strip(),
        ids=ids,
        layer=found.layer,
        atoms=found.atoms,
        center=found.center,
        n_atoms=n_atoms,
    )
