"""Pruning, 2:4 sparsity, quantization and low rank: each compression against a direct computation on small
matrices, storage costs for known shapes, and the loss of the real smollm2 model under each, on a copy."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from probes import calibrated, corpus, domains, pruning, updates
from probes import compressed_store as compressed_store_module
from probes.nll import token_nll
from probes.pruning import bytes_per_weight, compress_weight
from probes.text import encode
from results.pruning import KINDS, Compression
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.settings import settings

TEXT = "The quick brown fox jumps over the lazy dog. Then it ran home, and the dog slept by the fire."
SENTENCES = ("A cat sat on the mat.", "Rain fell all night.", "The shop opens at nine.", "She wrote him a letter.")


def _matrix(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).standard_normal((rows, cols)), dtype=torch.float32)


def test_pruning_zeroes_the_smallest_share() -> None:
    w = _matrix(8, 10)
    pruned = compress_weight(w, Compression("prune", 0.3))
    assert int((pruned == 0).sum()) == 24
    kept = pruned != 0
    assert torch.equal(pruned[kept], w[kept])
    assert w[kept].abs().min() > w[~kept].abs().max()


def test_2_4_keeps_the_two_largest_of_every_group() -> None:
    w = _matrix(6, 12)
    pruned = compress_weight(w, Compression("prune", 0.0, pattern="2:4"))
    groups, originals = pruned.view(6, 3, 4), w.view(6, 3, 4)
    assert torch.equal((groups != 0).sum(dim=2), torch.full((6, 3), 2))
    top = originals.abs().topk(2, dim=2).values
    assert torch.equal(groups.abs().sort(dim=2, descending=True).values[..., :2], top)
    short = compress_weight(
        _matrix(3, 6), Compression("prune", 0.5, pattern="2:4")
    )  # last group has 2 weights: both kept
    assert torch.equal((short != 0).sum(dim=1), torch.full((3,), 4))


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_quantization_levels_and_error(bits: int) -> None:
    w = _matrix(5, 300, seed=bits)
    q = compress_weight(w, Compression("quantize", bits))
    scale = w.abs().amax(dim=1, keepdim=True) / (2 ** (bits - 1) - 1)
    assert all(len(torch.unique(row)) <= 2**bits for row in q)
    assert bool(((q - w).abs() <= scale / 2 * (1 + 1e-6)).all())
    assert torch.allclose(q / scale, torch.round(q / scale), atol=1e-4)


def test_rank_r_is_the_svd_truncation() -> None:
    w = _matrix(20, 12)
    u, s, vh = np.linalg.svd(w.numpy().astype(np.float64), full_matrices=False)
    for r in (1, 3, 7):
        expected = (u[:, :r] * s[:r]) @ vh[:r]
        np.testing.assert_allclose(compress_weight(w, Compression("rank", r)).numpy(), expected, atol=1e-5)


def test_identity_settings_return_the_matrix() -> None:
    w = _matrix(6, 8)
    for setting in (Compression("prune", 0.0), Compression("quantize", 16), Compression("rank", 6)):
        assert torch.equal(compress_weight(w, setting), w)


def test_bytes_per_weight_of_known_shapes() -> None:
    shapes = [(100, 200), (300, 100)]  # 20,000 + 30,000 weights, 400 rows
    assert bytes_per_weight(Compression("quantize", 16), shapes) == 2.0
    assert bytes_per_weight(Compression("quantize", 4), shapes) == pytest.approx(0.5 + 2 * 400 / 50_000)
    assert bytes_per_weight(Compression("prune", 0.5), shapes) == pytest.approx(1.0 + 1 / 8)
    assert bytes_per_weight(Compression("prune", 0.0), shapes) == pytest.approx(2 + 1 / 8)
    assert bytes_per_weight(Compression("prune", 0.5, pattern="2:4"), shapes) == pytest.approx(1.125)
    assert bytes_per_weight(Compression("sparsegpt", 0.5, pattern="4:8"), [(8, 64)]) == pytest.approx(1 + 3 / 16)
    assert bytes_per_weight(Compression("gptq", 4, group=50), shapes) == pytest.approx(0.5 + 2 / 50)
    assert bytes_per_weight(Compression("rank", 10), shapes) == pytest.approx(2 * 10 * (300 + 400) / 50_000)
    assert bytes_per_weight(Compression("rank", 100), shapes) == 2.0  # full rank: the dense matrix


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        (Compression("rank", 0), "rank"),
        (Compression("rank", 2.5), "rank"),
        (Compression("prune", 1.0), "sparsity"),
        (Compression("prune", -0.1), "sparsity"),
        (Compression("quantize", 1), "bits"),
        (Compression("quantize", 17), "bits"),
        (Compression("quantize", 4.5), "bits"),
        (Compression("prune", 0.5, ("q", "attn")), "kind 'attn'"),
        (Compression("prune", 0.5, ()), "at least one kind"),
        (Compression("svd", 4), "method 'svd'"),
        (Compression("quantize", 4, pattern="2:4"), "N:M patterns"),
        (Compression("prune", 0.5, pattern="3:4"), "N:M patterns"),
        (Compression("prune", 0.5, group=64), "group size"),
        (Compression("gptq", 4, group=5000), "group size"),
    ],
)
def test_bad_settings_are_refused(setting: Compression, words: str) -> None:
    with pytest.raises(LmscopeError, match=words):
        setting.check()
    with pytest.raises(LmscopeError, match=words):
        compress_weight(torch.ones(4, 4), setting)


def test_every_kind_is_found(smollm2: ModelHandle, gemma3: ModelHandle, minilm: ModelHandle) -> None:
    for handle, kinds in (
        (smollm2, KINDS),
        (gemma3, KINDS),
        (minilm, ("q", "k", "v", "o", "up", "down")),
    ):
        found = pruning.linear_weights(handle)
        assert [m.kind for m in found] == list(kinds) * handle.n_layers
    hidden = minilm.text_config.hidden_size  # BERT: attention.output.dense is o, output.dense is down
    shapes = {m.kind: m.shape for m in pruning.linear_weights(minilm) if m.layer == 0}
    assert shapes["o"] == (hidden, hidden) and shapes["down"] == (hidden, minilm.text_config.intermediate_size)


def _mean_nll(handle: ModelHandle, text: str = TEXT) -> float:
    return float(np.mean(token_nll(handle, encode(handle, text, settings().max_tokens).token_ids)))


def test_compressed_copy_leaves_the_model_alone(smollm2: ModelHandle) -> None:
    before = {name: p.detach().clone() for name, p in smollm2.model.named_parameters()}
    setting = Compression("quantize", 3, ("q", "down"))
    with pruning.compressed(smollm2, setting) as small:
        assert small.fingerprint != smollm2.fingerprint and small.model is not smollm2.model
        q = dict(small.model.named_parameters())["model.layers.0.self_attn.q_proj.weight"]
        assert torch.equal(q, compress_weight(before["model.layers.0.self_attn.q_proj.weight"], setting))
        k = dict(small.model.named_parameters())["model.layers.0.self_attn.k_proj.weight"]
        assert torch.equal(k, before["model.layers.0.self_attn.k_proj.weight"])
    after = dict(smollm2.model.named_parameters())
    assert all(torch.equal(after[name], value) for name, value in before.items())


@pytest.mark.slow  # compresses SmolLM2 at several settings
def test_tradeoff_on_smollm2(smollm2: ModelHandle, cache: ResultCache) -> None:
    result = pruning.tradeoff(smollm2, TEXT, SENTENCES, [0.0, 0.5], [16, 8], cache).value
    base = _mean_nll(smollm2)
    assert result.base_nll_text == base
    direct = np.concatenate([token_nll(smollm2, np.asarray(smollm2.tokenizer(s)["input_ids"])) for s in SENTENCES])
    assert result.base_nll_corpus == pytest.approx(float(direct.mean()), abs=1e-4)
    assert result.n_sentences == len(SENTENCES)
    points = {(p.method, p.amount): p for p in result.points if p.label != "2:4"}
    assert [(p.method, p.label) for p in result.points] == [
        ("prune", "0% pruned"),
        ("prune", "50% pruned"),
        ("prune", "2:4"),
        ("quantize", "16-bit"),
        ("quantize", "8-bit"),
    ]
    for unchanged in (points["prune", 0.0], points["quantize", 16]):
        assert unchanged.nll_text == base and unchanged.nll_corpus == result.base_nll_corpus
    # The shared copy is restored between settings: each point equals a fresh compressed copy.
    with pruning.compressed(smollm2, Compression("quantize", 8)) as small:
        assert points["quantize", 8].nll_text == _mean_nll(small)
    # The lecture's claim, as measured: 8-bit quantization costs far less loss than 50% unstructured pruning.
    quantized, pruned = points["quantize", 8], points["prune", 0.5]
    assert abs(quantized.nll_text - base) * 10 < pruned.nll_text - base
    assert abs(quantized.nll_corpus - result.base_nll_corpus) * 10 < pruned.nll_corpus - result.base_nll_corpus
    assert quantized.bytes_per_weight < pruned.bytes_per_weight
    # Texts unlike the corpus: scored like the text, the same under an identity setting, worse when pruned.
    assert result.domains == list(domains.TITLES.values())
    for index, body in enumerate(domains.texts().values()):
        assert result.base_nll_domains[index] == _mean_nll(smollm2, body)
    assert np.array_equal(points["prune", 0.0].nll_domains, result.base_nll_domains)
    assert bool((points["prune", 0.5].nll_domains > result.base_nll_domains).all())
    assert pruning.tradeoff(smollm2, TEXT, SENTENCES, [0.0, 0.5], [16, 8], cache).hit


def test_rank_sweep_on_smollm2(smollm2: ModelHandle, cache: ResultCache) -> None:
    full = pruning.full_rank(smollm2, ("k", "v"))
    sweep = pruning.rank_sweep(smollm2, TEXT, [8, full], cache, kinds=("k", "v")).value
    assert sweep.base_nll == _mean_nll(smollm2)
    assert sweep.nll[1] == sweep.base_nll and sweep.nll[0] > sweep.base_nll
    assert sweep.bytes_per_weight[1] == 2.0 and sweep.bytes_per_weight[0] < 0.2
    with pruning.compressed(smollm2, Compression("rank", 8, ("k", "v"))) as small:
        assert sweep.nll[0] == pytest.approx(_mean_nll(small), abs=1e-5)


def test_encoders_have_no_loss(minilm: ModelHandle, cache: ResultCache) -> None:
    with pytest.raises(LmscopeError, match="encoder"):
        pruning.tradeoff(minilm, TEXT, SENTENCES, [0.5], [8], cache)


def test_differences_find_a_rank_4_update(smollm2: ModelHandle) -> None:
    tuned = copy.copy(smollm2)
    tuned.model = copy.deepcopy(smollm2.model)
    target = tuned.model.model.layers[3].self_attn.q_proj.weight
    rng = np.random.default_rng(0)
    b, _ = np.linalg.qr(rng.standard_normal((target.shape[0], 4)))
    a, _ = np.linalg.qr(rng.standard_normal((target.shape[1], 4)))
    with torch.no_grad():
        target += torch.as_tensor(0.05 * b @ a.T, dtype=target.dtype)  # four equal singular values of 0.05
    found = updates.differences(smollm2, tuned)
    assert len(found) == smollm2.n_layers * len(KINDS)
    for diff in found:
        if diff.name == "model.layers.3.self_attn.q_proj":
            assert diff.effective_rank == pytest.approx(4, abs=0.05)
            assert int((diff.singular_values > 1e-3).sum()) == 4
            np.testing.assert_allclose(diff.singular_values[:4], 0.05, rtol=1e-3)
            assert 0 < diff.relative_norm < 1
        else:
            assert diff.effective_rank == 0 and not diff.singular_values.any() and diff.relative_norm == 0
    tuned.model.to("meta")


def test_differences_refuse_other_architectures(smollm2: ModelHandle, gemma3: ModelHandle) -> None:
    with pytest.raises(LmscopeError, match="cannot be compared"):
        updates.differences(smollm2, gemma3)


@pytest.mark.slow  # GPTQ over every block of SmolLM2
def test_gptq_beats_round_to_nearest_on_smollm2_and_leaves_the_model_alone(
    smollm2: ModelHandle, cache: ResultCache
) -> None:
    """The lecture's quantization side on a held-out text of 16 corpus sentences (about 300 tokens): 4-bit GPTQ
    beats 4-bit round-to-nearest (on short sentences scored one by one they tie: bench/RESULTS.md). The pruning side
    (Wanda and SparseGPT far closer than magnitude at 50%) is the 'pruning-sparsegpt' preset's check
    (tests/test_lecture.py renders it on SmolLM2)."""
    held_out = " ".join(corpus.sentences()[:16])
    before = {name: p.detach().clone() for name, p in smollm2.model.named_parameters()}
    found = pruning.tradeoff(smollm2, held_out, (), [], [4], cache, methods=("quantize", "gptq"), patterns=()).value
    nll = {p.method: p.nll_text - found.base_nll_text for p in found.points}
    assert 0 < nll["gptq"] < nll["quantize"]
    assert found.calibration_tokens == calibrated.DEFAULT_SEQUENCES * calibrated.DEFAULT_LENGTH
    after = dict(smollm2.model.named_parameters())
    assert all(torch.equal(after[name], value) for name, value in before.items())


def test_calibration_text_is_never_held_out(smollm2: ModelHandle) -> None:
    held_out = corpus.sentences()[:40]
    ids = calibrated.calibration_ids(smollm2, [*held_out, TEXT], 4, 64)
    assert [len(s) for s in ids] == [64] * 4
    text = smollm2.tokenizer.decode(sum(ids, []))
    assert not any(sentence in text for sentence in held_out)
    with pytest.raises(LmscopeError, match="fewer or shorter"):
        calibrated.calibration_ids(smollm2, held_out, 64, 512)
    with pytest.raises(LmscopeError, match="calibration sequences"):
        calibrated.calibration_ids(smollm2, held_out, 65, 64)
    with pytest.raises(LmscopeError, match="Unknown method 'obs'"):
        pruning.settings_of(["obs"], [0.5], [], [4], 0, KINDS)


@pytest.fixture
def compressed_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of the test's own for the stored compressions."""
    monkeypatch.setenv("LMSCOPE_COMPRESSED_DIR", str(tmp_path))
    return tmp_path


def _weights(twin: ModelHandle) -> dict[str, torch.Tensor]:
    return {m.name: m.weight.detach().clone() for m in pruning.linear_weights(twin)}


@pytest.mark.slow  # calibrated compressions of SmolLM2
@pytest.mark.parametrize(
    "compression",
    [
        Compression("sparsegpt", 0.5, KINDS),
        Compression("wanda", 0.5, KINDS, pattern="2:4"),
        Compression("gptq", 3, KINDS, group=64),
    ],
    ids=["sparsegpt", "wanda-2:4", "gptq-3bit-g64"],
)
def test_a_calibrated_compression_is_stored_and_read_back_bit_for_bit(
    smollm2: ModelHandle, compressed_store: Path, monkeypatch: pytest.MonkeyPatch, compression: Compression
) -> None:
    calibration = calibrated.calibration_ids(smollm2, [TEXT], 2, 32)
    with pruning.compressed(smollm2, compression, calibration) as twin:
        computed = _weights(twin)
    (stored,) = compressed_store.glob("*/*.safetensors")
    # Compact: Wanda keeps a bit per weight; SparseGPT adds its kept values; GPTQ a byte per weight and a scale per 64.
    weights = sum(w.numel() for w in computed.values())
    budget = {"wanda": 1 / 8, "sparsegpt": 1 / 8 + 4 / 2, "gptq": 1 + 4 / 64}[compression.method]
    assert stored.stat().st_size < 1.01 * budget * weights + 1e6
    monkeypatch.setattr(calibrated, "compress_in_place", lambda *args: pytest.fail("compressed again"))
    with pruning.compressed(smollm2, compression, calibration) as twin:
        assert all(torch.equal(w, computed[name]) for name, w in _weights(twin).items())
    # Another calibration text is another compression.
    with pytest.raises(pytest.fail.Exception, match="compressed again"):
        with pruning.compressed(smollm2, compression, calibrated.calibration_ids(smollm2, [TEXT], 2, 40)):
            pass


@pytest.mark.slow  # Wanda on SmolLM2, computed twice
def test_a_damaged_stored_compression_is_computed_again(smollm2: ModelHandle, compressed_store: Path) -> None:
    compression = Compression("wanda", 0.5, KINDS)
    calibration = calibrated.calibration_ids(smollm2, [TEXT], 2, 32)
    with pruning.compressed(smollm2, compression, calibration) as twin:
        computed = _weights(twin)
    (stored,) = compressed_store.glob("*/*.safetensors")
    stored.write_bytes(stored.read_bytes()[: stored.stat().st_size // 2])
    with pruning.compressed(smollm2, compression, calibration) as twin:
        assert all(torch.equal(w, computed[name]) for name, w in _weights(twin).items())
    assert stored.stat().st_size > 1e6  # stored whole again


def test_the_least_recently_used_compressions_go_first(tmp_path: Path) -> None:
    files = []
    for i in range(4):
        path = tmp_path / "model" / f"m-{i}.safetensors"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x" * 1000)
        os.utime(path, (1000 + i, 1000 + i))
        files.append(path)
    os.utime(files[0], (2000, 2000))  # read last
    compressed_store_module.evict(tmp_path, 2500)
    assert [p.exists() for p in files] == [True, False, False, True]
