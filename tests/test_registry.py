from __future__ import annotations

import pytest

from mtlbench.errors import MtlbenchError, UnknownNameError
from mtlbench.registry import MODELS, REGISTRIES, Registry, registry


def test_register_by_decorator_records_source_and_summary():
    reg: Registry = Registry("widgets")

    @reg.register("spinner", colour="red")
    def make_spinner(speed: int = 1) -> tuple[str, int]:
        """A spinning widget.

        Longer text that is not the summary.
        """
        return ("spinner", speed)

    entry = reg._entries["spinner"]
    assert entry.source == "built-in"
    assert entry.summary == "A spinning widget."
    assert entry.meta["colour"] == "red"
    assert reg.build("spinner", speed=3) == ("spinner", 3)


def test_default_name_is_the_function_name():
    reg: Registry = Registry("widgets")

    @reg.register()
    def knob() -> str:
        return "knob"

    assert "knob" in reg._entries


def test_duplicate_name_is_an_error_naming_the_first_owner():
    reg: Registry = Registry("widgets")
    reg.add("lever", object)
    with pytest.raises(MtlbenchError, match=r"'lever' is already registered \(by built-in\)"):
        reg.add("lever", object)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError) as info:
        MODELS.get("mtinnet")
    msg = str(info.value)
    assert msg.startswith("unknown model 'mtinnet': did you mean 'mtinet'")  # the closest first
    assert "known models: " in msg and "hps" in msg


def test_unknown_name_without_close_match_lists_known_names():
    with pytest.raises(UnknownNameError) as info:
        registry("tasks").get("zzzz")
    msg = str(info.value)
    assert "did you mean" not in msg
    known = msg.partition("known tasks: ")[2].split(", ")  # plugins' tasks may be among them
    assert {"depth", "edge", "normals", "seg"} <= set(known) and known == sorted(known)


def test_wildcard_names():
    assert registry("backbones").names("resnet*") == ["resnet101", "resnet18", "resnet34", "resnet50"]


def test_unknown_registry_kind_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'models'"):
        registry("modles")


def test_all_design_registries_exist():
    assert set(REGISTRIES) == {"tasks", "backbones", "interactions", "losses", "weightings", "datasets", "models"}


def test_builtins_are_registered():
    assert set(registry("tasks").names()) >= {"depth", "seg", "edge"}
    assert set(registry("models").names()) >= {"mtinet", "hps"}
    assert "synthrooms" in registry("datasets")
    assert "guided_attention" in registry("interactions")
