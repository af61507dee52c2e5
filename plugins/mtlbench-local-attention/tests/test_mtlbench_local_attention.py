"""The local_attention interaction keeps mtlbench's interaction contract (mtlbench.testing)."""

import pytest

pytest.importorskip("mtlbench_local_attention",
                    reason="the plugin is not installed: pip install ./plugins/mtlbench-local-attention")


def test_local_attention_keeps_the_interaction_contract():
    from mtlbench.testing import check_interaction

    report = check_interaction("local_attention", window=3)
    assert "gradients reach target, guide and every parameter" in report.passed


def test_local_attention_is_registered_by_its_plugin():
    from mtlbench.registry import INTERACTIONS

    source = INTERACTIONS.entry("local_attention").source
    assert source == "plugin local_attention (mtlbench-local-attention)"
