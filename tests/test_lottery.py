"""Lottery tickets: the masks, the rewinding and the masked training of the small MLP, the CLI and the page, and
Frankle and Carbin's result on the digits with the default settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probes import lottery, relu_neurons
from results.lottery import LotteryResult
from runtime import limits
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from tests.helpers import chart, cli, open_page, plotly_array, texts

SIZES = [n_in * n_out for n_in, n_out in zip(lottery.LAYER_SIZES[:-1], lottery.LAYER_SIZES[1:])]
RATES = [0.2, 0.2, 0.1]  # the output layer at half the rate


def _draw(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _numpy_accuracy(weights: lottery.Weights, data: lottery.Digits) -> float:
    """The network's test accuracy, computed in numpy from its weights."""
    x = data.x_test.numpy().astype(np.float64)
    for i, (weight, bias) in enumerate(weights):
        x = x @ weight.numpy().T + bias.numpy()
        x = np.maximum(x, 0) if i < len(weights) - 1 else x
    return float(np.mean(x.argmax(axis=1) == data.y_test.numpy()))


@pytest.fixture(scope="module")
def data() -> lottery.Digits:
    return lottery.digits()


@pytest.fixture(scope="module")
def dense(data: lottery.Digits) -> tuple[lottery.Weights, lottery.Weights]:
    """A fresh network and the same network trained, dense."""
    initial = lottery.initial_weights(_draw(0))
    return initial, lottery.train(initial, lottery.dense_masks(), data, _draw(1))


def test_the_digits_split_is_fixed_and_stratified(data: lottery.Digits) -> None:
    assert len(data.y_train) + len(data.y_test) == 1797 and len(data.y_test) == 450
    assert np.abs(np.bincount(data.y_test.numpy()) / np.bincount(data.y_train.numpy()) - 1 / 3).max() < 0.02
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) == 1.0


def test_the_dense_network_learns_the_digits(dense, data: lottery.Digits) -> None:
    _, trained = dense
    measured = lottery.accuracy(trained, lottery.dense_masks(), data)
    assert measured == pytest.approx(_numpy_accuracy(trained, data), abs=1 / 450)
    assert measured > 0.9


def test_pruning_keeps_the_intended_share_of_the_largest_survivors(dense) -> None:
    _, trained = dense
    masks = lottery.dense_masks()
    for round_ in (1, 2, 3):
        pruned = lottery.prune(trained, masks, round_)
        for (weight, _), before, after, size, rate in zip(trained, masks, pruned, SIZES, RATES):
            assert int(after.sum()) == round(size * (1 - rate) ** round_)
            assert not (after & ~before).any()  # only survivors survive
            magnitude = weight.abs().numpy()
            dropped = (before & ~after).numpy()
            assert magnitude[after.numpy()].min() >= magnitude[dropped].max()
        masks = pruned


def test_random_masks_keep_as_many_weights_elsewhere(dense) -> None:
    _, trained = dense
    masks = lottery.prune(trained, lottery.prune(trained, lottery.dense_masks(), 1), 2)
    shuffled = lottery.random_masks(masks, _draw(2))
    assert [int(m.sum()) for m in shuffled] == [int(m.sum()) for m in masks]
    # A random place is one of the masks' with the chance of the share kept (64%, and 81% in the output layer)
    assert all(abs((m & s).sum() / m.sum() - m.float().mean()) < 0.05 for m, s in zip(masks, shuffled))


def test_rewinding_restores_the_initial_values_of_the_survivors(dense, monkeypatch: pytest.MonkeyPatch) -> None:
    initial, trained = dense
    masks = lottery.prune(trained, lottery.dense_masks(), 1)
    monkeypatch.setattr(lottery, "EPOCHS", 0)  # training starts from the rewound network
    rewound = lottery.train(initial, masks, lottery.digits(), _draw(3))
    for (weight, bias), (start, start_bias), (done, _), mask in zip(rewound, initial, trained, masks):
        assert torch.equal(weight[mask], start[mask]) and not torch.equal(start[mask], done[mask])
        assert (weight[~mask] == 0).all() and torch.equal(bias, start_bias)


def test_masked_weights_stay_zero_through_training(dense, data: lottery.Digits) -> None:
    initial, trained = dense
    masks = lottery.prune(trained, lottery.dense_masks(), 3)
    retrained = lottery.train(initial, masks, data, _draw(4))
    for (weight, _), (start, _), mask in zip(retrained, initial, masks):
        assert (weight[~mask] == 0).all()
        assert not torch.equal(weight[mask], start[mask])  # while the survivors trained
    measured = lottery.accuracy(retrained, masks, data)
    assert measured == pytest.approx(_numpy_accuracy(retrained, data), abs=1 / 450) and measured > 0.9


def test_a_run_is_its_seed_alone_and_reports_each_training() -> None:
    reported: list[tuple[int, int]] = []
    first = lottery.compute(1, 1, lambda done, total: reported.append((done, total)))
    again = lottery.compute(1, 1)
    assert reported == [(1, 4), (2, 4), (3, 4), (4, 4)]
    for name, line in first.lines().items():
        np.testing.assert_array_equal(line, again.lines()[name])
        assert line[0, 0] == first.dense[0]  # round 0 is the one dense network
    kept = [round(n * (1 - r)) for n, r in zip(SIZES, RATES)]
    np.testing.assert_allclose(first.remaining, [1.0, sum(kept) / sum(SIZES)])
    np.testing.assert_allclose(first.remaining_per_layer[1], np.array(kept) / SIZES)


@pytest.mark.parametrize(
    ("rounds", "seeds", "message"),
    [
        (0, 1, "number of pruning rounds must be from 1"),
        (limits.LOTTERY_ROUNDS + 1, 1, "number of pruning rounds"),
        (2, 0, "number of seeds must be from 1"),
        (2, limits.LOTTERY_SEEDS + 1, "number of seeds"),
    ],
)
def test_counts_over_the_limits_are_refused(cache: ResultCache, rounds: int, seeds: int, message: str) -> None:
    with pytest.raises(LmscopeError, match=message):
        lottery.run(cache, rounds, seeds, on_progress=lambda done, total: pytest.fail("trained before the check"))


@pytest.fixture(scope="module")
def defaults(shared_cache: ResultCache) -> LotteryResult:
    """The default experiment, through the run's result cache (the lecture preset and the tour read it too)."""
    return lottery.run(shared_cache).value


@pytest.mark.slow  # 129 trainings, about 20 s of one core (unless the lecture tests computed them first)
def test_winning_tickets_match_the_dense_network_and_beat_reinit(defaults: LotteryResult) -> None:
    assert defaults.accuracy_ticket.shape == (lottery.DEFAULT_SEEDS, lottery.DEFAULT_ROUNDS + 1)
    assert defaults.remaining[-1] < 0.05  # about 95% sparsity
    near = defaults.nearest_round(0.1)
    assert 0.08 < defaults.remaining[near] < 0.12
    dense = defaults.dense.mean()
    assert dense > 0.95
    ticket, reinit = defaults.accuracy_ticket[:, near].mean(), defaults.accuracy_reinit[:, near].mean()
    assert ticket >= dense - 0.01 and ticket > reinit
    assert defaults.accuracy_ticket[:, -1].mean() > defaults.accuracy_random_mask[:, -1].mean()


@pytest.mark.slow  # loads a model
def test_the_cli_prints_the_probe_result() -> None:
    done = cli("lottery", "--rounds", "1", "--seeds", "2")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = lottery.compute(1, 2)
    assert out["remaining"] == expected.remaining.tolist() and out["remaining"][0] == 1.0
    for name in ("accuracy_ticket", "accuracy_reinit", "accuracy_random_mask"):
        assert out[name] == getattr(expected, name).tolist()
    refused = cli("lottery", "--seeds", str(limits.LOTTERY_SEEDS + 1))
    assert refused.returncode == 1 and "number of seeds" in refused.stderr and "Traceback" not in refused.stderr


def test_the_page_draws_the_three_lines_from_the_probe() -> None:
    at = open_page("app_pages/11_Lottery_tickets.py", rounds="2", seeds="1")
    assert not at.exception and not at.error, texts(at.error)
    expected = lottery.compute(2, 1)
    figure = chart(at, 0)
    lines = {t["name"]: t for t in figure["data"] if t.get("mode") == "lines+markers"}
    assert list(lines) == ["winning ticket", "reinit", "random mask"]
    for name, accuracy in expected.lines().items():
        np.testing.assert_allclose(plotly_array(lines[name]["y"]), accuracy.mean(axis=0) * 100)
        np.testing.assert_allclose(plotly_array(lines[name]["x"]), expected.remaining * 100)
    assert figure["layout"]["xaxis"]["type"] == "log" and figure["layout"]["xaxis"]["autorange"] == "reversed"
    assert "not a language model" in figure["layout"]["title"]["subtitle"]["text"]
    assert at.query_params["rounds"] == "2" and at.query_params["seeds"] == "1"


def _numpy_hidden(weights: lottery.Weights, data: lottery.Digits) -> list[np.ndarray]:
    """The hidden layers' ReLU outputs on the test digits, computed in numpy."""
    x, hidden = data.x_test.numpy().astype(np.float64), []
    for weight, bias in weights[:-1]:
        x = np.maximum(x @ weight.numpy().astype(np.float64).T + bias.numpy(), 0)
        hidden.append(x)
    return hidden


def test_the_relu_activity_equals_a_direct_computation(data: lottery.Digits, cache: ResultCache) -> None:
    """Zero shares, firing rates and dead neurons of the seed's dense network, initialised and trained, from its
    weights in numpy; its trained accuracy is round 0 of the lottery run of the same seed."""
    found = relu_neurons.run(cache, 0).value
    assert found.stages == ["initialised", "trained"] and found.n_inputs == 450
    for s, weights in enumerate(lottery.dense_network(0)):
        hidden = _numpy_hidden(weights, data)
        # float32 products against float64 ones: an activation within rounding of 0 could land either side
        for layer, h in enumerate(hidden):
            np.testing.assert_allclose(found.zero_share[s, layer], np.mean(h <= 0), atol=1e-3)
            np.testing.assert_allclose(found.rates[s][layer], np.mean(h > 0, axis=0), atol=2 / 450)
            near = np.abs(h).max(axis=0) < 1e-5  # a neuron whose largest output is within rounding of 0
            assert abs(found.dead[s, layer] - int((h.max(axis=0) <= 0).sum())) <= int(near.sum())
    assert found.accuracy[1] == lottery.compute(1, 1).accuracy_ticket[0, 0]
    assert found.dead[1].sum() > 2 * found.dead[0].sum() and found.zero_share[1].mean() > 0.3
    with pytest.raises(LmscopeError, match="seed must be from 0"):
        relu_neurons.run(cache, limits.LOTTERY_SEEDS)


def test_the_neurons_page_draws_the_relu_network() -> None:
    at = open_page("app_pages/6_Distributions_and_neurons.py", sentences="4", relu_seed="1")
    assert not at.exception and not at.error
    found = relu_neurons.run(ResultCache(), 1).value
    (drawn,) = [
        c
        for c in (chart(at, i) for i in range(len(at.get("plotly_chart"))))
        if "ReLU" in json.dumps(c["layout"]["title"])
    ]
    zeros = [trace for trace in drawn["data"] if trace["xaxis"] == "x"]
    for s, trace in enumerate(zeros):
        np.testing.assert_allclose(plotly_array(trace["y"]), found.zero_share[s], rtol=1e-6)
    never = [plotly_array(trace["y"])[0] for trace in drawn["data"] if trace["xaxis"] == "x2"]
    assert never == found.dead[1].tolist()


def test_the_cli_prints_the_relu_activity(cache: ResultCache) -> None:
    done = cli("relu-neurons", "--seed", "2")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    found = relu_neurons.run(cache, 2).value
    assert out["stages"] == found.stages and out["dead"] == found.dead.tolist() and out["seed"] == 2
    np.testing.assert_allclose(out["zero_share"], found.zero_share, rtol=1e-9)
    np.testing.assert_allclose(out["rates"][1][0], found.rates[1][0], rtol=1e-9)
    bad = cli("relu-neurons", "--seed", "99")
    assert bad.returncode != 0 and "seed must be from 0" in bad.stderr and "Traceback" not in bad.stderr
