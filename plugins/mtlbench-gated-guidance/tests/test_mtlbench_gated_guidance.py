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
