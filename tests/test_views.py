"""The view registry: a view declared once appears in the navigation, the command line and the preset schema
without editing any other file; clashes are refused."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import plotly.graph_objects as go
import pytest

from lecture import presets
from lecture.render import render
from probes import attention
from runtime.cache import ResultCache
from runtime.errors import LmscopeError
from runtime.handle import ModelHandle
from runtime.models import load
from tests.helpers import open_page
from ui.navigation import routes
from views import cli, registry
from views.registry import Command, Figure, Run, View
from viz.attention import head_grid

TOY_PAGE = "tests/toy_view_page.py"


def _draw(run: Run) -> go.Figure:
    result = run.keep("attention", attention.run(run.handle, run.text, run.cache))
    return head_grid(result.entropy, "Entropy", "entropy", None)


def _arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--model", required=True)
    command.add_argument("--text", required=True)


def _print(args: argparse.Namespace) -> object:
    handle = load(args.model)
    return {"model": handle.name, "entropy": attention.run(handle, args.text, ResultCache()).value.entropy}


TOY = View(
    key="toy",
    title="Toy view",
    summary="a view registered by a test",
    icon="toys",
    group="Tests",
    page=TOY_PAGE,
    commands=(Command("toy", "every head's attention entropy", _arguments, _print),),
    figures=(Figure("toy_entropy", _draw, (attention,)),),
)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> View:
    """The toy view registered for one test; the registry is restored after it."""
    monkeypatch.setattr(registry, "_views", dict(registry._views))
    return registry.register(TOY)


def test_the_registry_holds_every_page(toy: View) -> None:
    assert {v.page for v in registry.views()} == {TOY_PAGE} | {str(p) for p in Path("app_pages").glob("[0-9]*.py")}
    assert registry.views()[-1] == toy and registry.views()[0].key == "tour"  # unnumbered pages last
    assert toy.url_path == "toy_view_page"


@pytest.mark.parametrize(
    "clash",
    [
        {"key": "sinks"},
        {"page": "app_pages/4_Attention_sinks.py"},
        {"commands": (Command("heads", "", _arguments, _print),)},
        {"figures": (Figure("esd", _draw),)},
    ],
)
def test_a_clash_is_refused(toy: View, clash: dict) -> None:
    fields = {"key": "other", "page": "tests/other.py", "commands": (), "figures": ()} | clash
    with pytest.raises(LmscopeError, match="already registered"):
        registry.register(View(title="Other", summary="", icon="toys", group="Tests", **fields))


def test_a_registered_view_is_in_the_navigation(toy: View) -> None:
    home = open_page("app.py")
    links = [element.proto.label for element in home.get("page_link")]
    assert "Toy view: a view registered by a test" in links
    page = open_page(TOY_PAGE)
    assert not page.exception and "The toy view of smollm2-135m-instruct." in [m.value for m in page.markdown]


def test_a_registered_view_is_a_command(toy: View, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["toy", "--model", "smollm2-135m-instruct", "--text", "The cat sat."]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"] == "smollm2-135m-instruct" and len(printed["entropy"]) == 30


def test_a_registered_figure_is_in_the_preset_schema(toy: View, tmp_path: Path, smollm2: ModelHandle) -> None:
    written = tmp_path / "presets.toml"
    written.write_text(
        'model = "smollm2-135m-instruct"\n[texts]\ncat = "The cat sat on the mat."\n'
        '[[section]]\nid = "toys"\ntitle = "Toys"\ntext = "A section."\n'
        '[[preset]]\nname = "toy"\nversion = 1\nsection = "toys"\ntitle = "Entropy"\ncaption = "Every head."\n'
        'figure = "toy_entropy"\ntext = "cat"\n'
    )
    preset = presets.load(written, registry.figure_pages()).presets["toy"]
    assert preset.page == TOY_PAGE
    done = render(preset, smollm2, ResultCache())
    assert done.figure.layout.title.text == "Entropy" and done.settings["view"] == "toy"
    assert done.results["attention"].entropy.shape == (30, 9)


# Every URL path of the last release (7bdcdd0, views.registry.url_path of each view's page), with its view's key.
RELEASED = {
    "Lecture_tour": "tour",
    "Attention": "attention",
    "Head_atlas": "heads",
    "Structured_attention": "structured",
    "Attention_sinks": "sinks",
    "Massive_activations": "massive",
    "Distributions_and_neurons": "neurons",
    "Weight_distributions": "weights",
    "Weight_spectra": "spectra",
    "Pruning_vs_quantization": "pruning",
    "Expert_routing": "routing",
    "Lottery_tickets": "lottery",
    "Concepts": "concepts",
    "Fine_tuning": "finetune",
}


def test_every_released_url_still_opens_its_view() -> None:
    opened = routes()
    assert {path: opened[path].key for path in RELEASED if path in opened} == RELEASED
    assert all(view.url_path in opened and opened[view.url_path] == view for view in registry.views())


# Every command of the last release's CLI (466c6e2, `python -m lmscope --help`), with the command it runs now.
RELEASED_COMMANDS = {
    "ablate": "ablate",
    "activations": "activations",
    "attention": "attention",
    "compress": "pruning",
    "concepts": "concepts",
    "drop-heads": "drop-heads",
    "finetune": "finetune",
    "heads": "heads",
    "list-models": "list-models",
    "lottery": "lottery",
    "moe": "moe",
    "prepare": "prepare",
    "weights": "weights",
    "window": "window",
}


def test_every_released_command_still_runs_its_view() -> None:
    runs = {command.name: command.run for command in (*cli.STORE, *registry.commands())}
    (subcommands,) = [a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for old, new in RELEASED_COMMANDS.items():
        assert subcommands.choices[old].get_default("run") is runs[new], old
