"""The cbam interaction keeps mtlbench's interaction contract (mtlbench.testing)."""

import pytest

pytest.importorskip("mtlbench_cbam",
                    reason="the plugin is not installed: pip install ./plugins/mtlbench-cbam")


def test_cbam_keeps_the_interaction_contract():
    from mtlbench.testing import check_interaction

    report = check_interaction("cbam")
    assert "gradients reach target, guide and every parameter" in report.passed


def test_cbam_is_registered_by_its_plugin():
    from mtlbench.registry import INTERACTIONS

    source = INTERACTIONS.entry("cbam").source
    assert source == "plugin cbam (mtlbench-cbam)"
