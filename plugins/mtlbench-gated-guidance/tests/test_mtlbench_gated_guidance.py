"""The gated_attention interaction keeps mtlbench's interaction contract (mtlbench.testing)."""

import pytest

pytest.importorskip("mtlbench_gated_guidance",
                    reason="the plugin is not installed: pip install ./plugins/mtlbench-gated-guidance")


def test_gated_attention_keeps_the_interaction_contract():
    from mtlbench.testing import check_interaction

    report = check_interaction("gated_attention")
    assert "gradients reach target, guide and every parameter" in report.passed


def test_gated_attention_is_registered_by_its_plugin():
    from mtlbench.registry import INTERACTIONS

    source = INTERACTIONS.entry("gated_attention").source
    assert source == "plugin gated_guidance (mtlbench-gated-guidance)"


def test_gated_attention_options_are_declared_and_reach_the_module():
    from mtlbench.registry import INTERACTIONS
    from mtlbench.testing import check_interaction

    assert {k: o.default for k, o in INTERACTIONS.entry("gated_attention").options.items()} == \
        {"dim": 64, "heads": 1, "grid": 16}
    check_interaction("gated_attention", dim=8, heads=2, grid=4)
    assert INTERACTIONS.build("gated_attention", 16, heads=2, dim=8).heads == 2
