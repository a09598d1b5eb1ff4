"""Concepts as sparse combinations: the dictionary and a word's code recomputed from the model's own weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.decomposition import sparse_encode

from probes import concepts
from results.concepts import ConceptDictionary
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from tests.helpers import UNIT_ROUNDOFF, chart, cli, direct, open_page, plotly_array
from views.concepts import EMBEDDINGS

pytestmark = pytest.mark.slow  # one dictionary fit on SmolLM2 (about 20 s), shared by the session's cache


@pytest.fixture(scope="module")
def found(smollm2: ModelHandle, shared_cache: ResultCache) -> ConceptDictionary:
    return concepts.dictionary(smollm2, shared_cache).value


def _unit(vectors: np.ndarray, center: np.ndarray) -> np.ndarray:
    centred = vectors - center.astype(np.float64)
    return centred / np.linalg.norm(centred, axis=-1, keepdims=True)


def _embeddings(handle: ModelHandle, ids: list[int] | np.ndarray) -> np.ndarray:
    weight = getattr(handle.model.get_input_embeddings(), "weight")
    return weight.detach()[torch.as_tensor(ids)].double().numpy()


@pytest.fixture(scope="module")
def fitted_codes(smollm2: ModelHandle, found: ConceptDictionary) -> np.ndarray:
    """OMP codes of the fitted rows, recomputed from the embedding matrix and the stored atoms."""
    rows = _unit(_embeddings(smollm2, found.fit_token_ids), found.center)
    return sparse_encode(rows, found.atoms.astype(np.float64), algorithm="omp", n_nonzero_coefs=found.n_nonzero)


@pytest.fixture(scope="module")
def undecided(smollm2: ModelHandle, found: ConceptDictionary) -> np.ndarray:
    """Per fitted row: True where rounding could change which atoms OMP chooses for it.

    The probe coded the rows with its float64 atoms and center; the test has them rounded to float32 (off by at most
    u per entry). To first order that moves a correlation a . r of OMP's step s (s atoms A_S chosen, r the residual)
    by at most u (the atom) + u |c| / |e - c| (the unit row, through the center c) + 2 u sqrt(s) / sigma_min(A_S) (the
    projection on the chosen atoms), and the gap between two correlations by twice that. A row whose choice beat the
    runner-up by less at some step may be coded otherwise by the probe (5 of 8,000 rows when this was written)."""
    embeddings = _embeddings(smollm2, found.fit_token_ids)
    rows = _unit(embeddings, found.center)
    atoms = found.atoms.astype(np.float64)
    off_center = np.linalg.norm(found.center.astype(np.float64)) / np.linalg.norm(
        embeddings - found.center.astype(np.float64), axis=1
    )
    chosen = np.zeros((len(rows), 0), dtype=np.int64)
    residual, narrow = rows, np.zeros(len(rows), dtype=bool)
    for step in range(found.n_nonzero):  # OMP as its definition reads, every row at once
        picked = atoms[chosen]  # (rows, step, d)
        gram = np.einsum("nsd,ntd->nst", picked, picked)
        sigma = np.sqrt(np.linalg.eigvalsh(gram)[:, 0]) if step else np.ones(len(rows))
        bound = 2 * UNIT_ROUNDOFF * (1 + off_center + 2 * np.sqrt(step) / sigma)
        scores = np.abs(residual @ atoms.T)
        np.put_along_axis(scores, chosen, -np.inf, axis=1)
        runner_up, best = np.sort(scores, axis=1)[:, -2:].T
        narrow |= best - runner_up <= bound
        chosen = np.concatenate([chosen, scores.argmax(axis=1)[:, None]], axis=1)
        picked = atoms[chosen]
        gram = np.einsum("nsd,ntd->nst", picked, picked)
        code = np.linalg.solve(gram, np.einsum("nsd,nd->ns", picked, rows)[..., None])[..., 0]
        residual = rows - np.einsum("ns,nsd->nd", code, picked)
    return narrow


@pytest.mark.parametrize("word", ["apple", "king", "photosynthesis"])
def test_a_words_reconstruction_is_its_code_times_the_atoms(
    smollm2: ModelHandle, found: ConceptDictionary, shared_cache: ResultCache, word: str
) -> None:
    result = concepts.decompose(smollm2, word, found, 5, shared_cache).value
    ids = smollm2.tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    x = _unit(_embeddings(smollm2, ids).mean(axis=0), found.center)
    np.testing.assert_allclose(result.vector, x, atol=1e-5)
    assert len(result.atoms) in range(1, 6) and len(set(result.atoms.tolist())) == len(result.atoms)
    x_hat = result.coefficients.astype(np.float64) @ found.atoms[result.atoms].astype(np.float64)
    assert result.reconstruction_error == pytest.approx(np.linalg.norm(x - x_hat), abs=1e-5)
    # Five atoms explain more of the word than the best of 20 random five-dimensional subspaces does.
    rng = np.random.default_rng(0)
    random_errors = []
    for _ in range(20):
        basis = rng.standard_normal((x.size, 5))
        fit = basis @ np.linalg.lstsq(basis, x, rcond=None)[0]
        random_errors.append(np.linalg.norm(x - fit))
    assert result.reconstruction_error < min(random_errors) - 0.03
    # The atoms' parts of |x|^2 and the residual's add up to 1 (OMP's residual is orthogonal to its atoms).
    assert result.shares.sum() + result.residual_share == pytest.approx(1.0, abs=1e-4)
    assert list(np.abs(result.coefficients)) == sorted(np.abs(result.coefficients), reverse=True)


def test_the_fit_codes_are_sparse_and_its_error_is_the_recomputed_one(
    found: ConceptDictionary, fitted_codes: np.ndarray, undecided: np.ndarray, smollm2: ModelHandle
) -> None:
    assert found.atoms.shape == (concepts.N_ATOMS, smollm2.text_config.hidden_size)
    np.testing.assert_allclose(np.linalg.norm(found.atoms, axis=1), 1.0, atol=1e-5)
    assert ((fitted_codes != 0).sum(axis=1) <= found.n_nonzero).all()
    assert found.heldout_nonzeros <= found.n_nonzero
    rows = _unit(_embeddings(smollm2, found.fit_token_ids), found.center)
    errors = np.linalg.norm(rows - fitted_codes @ found.atoms.astype(np.float64), axis=1)
    assert found.fit_error == pytest.approx(errors.mean(), abs=1e-4)
    # Rows whose atoms rounding decides (see `undecided`) may add to any atom's count, each at most once.
    decided = (fitted_codes[~undecided] != 0).sum(axis=0)
    assert np.all(decided <= found.usage) and np.all(found.usage <= decided + undecided.sum())
    assert undecided.sum() < 0.01 * len(undecided)  # a rounding band, not a loophole
    assert found.fit_error <= found.heldout_error < 1.0


def test_atom_labels_are_the_tokens_with_the_largest_coefficients(
    smollm2: ModelHandle, found: ConceptDictionary, fitted_codes: np.ndarray, undecided: np.ndarray
) -> None:
    pieces = smollm2.tokenizer.convert_ids_to_tokens(found.fit_token_ids.tolist())
    names = np.array([p.lstrip("Ġ") for p in pieces])
    # A row whose atoms rounding decides (see `undecided`) may hold any coefficient in the probe's codes: an atom
    # labelled with such a row's token is not checked; the others' labels come from the decided rows alone.
    unsure = {name.lower() for name in names[undecided]}
    checked = 0
    for atom in range(found.n_atoms):
        if unsure & {label.lower() for label in found.labels[atom]}:
            continue
        checked += 1
        column = fitted_codes[:, atom]
        best: dict[str, float] = {}  # each case-folded token's largest coefficient on this atom
        for name, value in zip(names[~undecided], column[~undecided]):
            if value > 0:
                best[name.lower()] = max(best.get(name.lower(), 0.0), float(value))
        top = sorted(best.values(), reverse=True)[: concepts.LABELS]
        labels = found.labels[atom]
        assert len(labels) == len(top)
        # Each label is a token whose coefficient is the one at its rank (ties may order equal tokens either way).
        np.testing.assert_allclose([best[label.lower()] for label in labels], top, atol=1e-4)
        np.testing.assert_allclose(found.label_coefficients[atom, : len(top)], top, atol=1e-4)
    assert checked > 0.9 * found.n_atoms


def test_a_second_request_comes_from_the_cache(smollm2: ModelHandle, shared_cache: ResultCache, found) -> None:
    again = concepts.dictionary(smollm2, shared_cache)
    assert again.hit and np.array_equal(again.value.atoms, found.atoms)


def test_a_layer_decomposes_the_blocks_output_at_the_words_last_token(minilm: ModelHandle, cache: ResultCache) -> None:
    found = concepts.dictionary(minilm, cache, 2).value
    assert found.layer == 2 and "block 2" in found.source and found.heldout_error < 1.0
    result = concepts.decompose(minilm, "strawberries", found, 4, cache).value
    ids = minilm.tokenizer(f"{concepts.LEAD_IN} strawberries")["input_ids"]  # [CLS] ... [SEP]
    hidden = direct(minilm, np.asarray(ids), output_hidden_states=True).hidden_states[3][0, -2].double().numpy()
    np.testing.assert_allclose(result.vector, _unit(hidden, found.center), atol=1e-4)
    x_hat = result.coefficients.astype(np.float64) @ found.atoms[result.atoms].astype(np.float64)
    assert result.reconstruction_error == pytest.approx(np.linalg.norm(result.vector - x_hat), abs=1e-4)
    assert len(result.atoms) <= 4


@pytest.mark.parametrize(
    ("word", "atoms", "message"),
    [
        ("   ", 5, "Type a word"),
        ("x" * 41, 5, "At most 40 characters"),
        ("apple", 0, "number of atoms must be from 1 to 16"),
        ("apple", 17, "number of atoms must be from 1 to 16"),
        ("antidisestablishmentarianism" + "qzx" * 3, 5, "At most 8 tokens in the word"),
    ],
)
def test_bad_requests_get_a_message(
    smollm2: ModelHandle, found: ConceptDictionary, cache: ResultCache, word: str, atoms: int, message: str
) -> None:
    with pytest.raises(LmscopeError, match=message):
        concepts.decompose(smollm2, word, found, atoms, cache)


def test_unknown_words_and_layers_get_a_message(minilm: ModelHandle, smollm2: ModelHandle, cache: ResultCache) -> None:
    with pytest.raises(LmscopeError, match="not in the vocabulary"):
        concepts.word_tokens(minilm, "☃")
    with pytest.raises(LmscopeError, match="layer must be from 0 to 29"):
        concepts.dictionary(smollm2, cache, 30)


def test_the_cli_prints_the_words_code(found: ConceptDictionary, smollm2: ModelHandle, shared_cache) -> None:
    done = cli("concepts", "--model", "smollm2-135m-instruct", "--word", "apple", "--atoms", "4")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = concepts.decompose(smollm2, "apple", found, 4, shared_cache).value
    assert out["model"] == smollm2.name and out["fingerprint"] == smollm2.fingerprint and out["layer"] is None
    assert [a["atom"] for a in out["atoms"]] == expected.atoms.tolist()
    np.testing.assert_allclose([a["coefficient"] for a in out["atoms"]], expected.coefficients, atol=1e-6)
    assert [a["tokens"] for a in out["atoms"]] == [found.labels[i] for i in expected.atoms]
    assert out["reconstruction_error"] == pytest.approx(expected.reconstruction_error)
    assert out["fit"]["heldout_error"] == pytest.approx(found.heldout_error)
    assert out["fit"]["n_nonzero"] == found.n_nonzero and out["fit"]["n_atoms"] == found.n_atoms


def test_the_page_draws_the_words_equation(found: ConceptDictionary, smollm2: ModelHandle, shared_cache) -> None:
    at = open_page("app_pages/12_Concepts.py", word="king", atoms="4")
    assert not at.exception and not at.error
    expected = concepts.decompose(smollm2, "king", found, 4, shared_cache).value
    figure = chart(at, 0)
    bars = figure["data"][-1]  # the coefficients, then the residual
    np.testing.assert_allclose(
        plotly_array(bars["x"]), [*expected.coefficients, expected.reconstruction_error], atol=1e-6
    )
    assert f"reconstruction error {expected.reconstruction_error:.2f}" in figure["layout"]["title"]["text"]
    assert len(figure["data"]) == len(expected.atoms) + 2  # one block per atom, the residual's, the bar chart
    assert at.query_params["word"] == "king" and at.query_params["layer"] == EMBEDDINGS
