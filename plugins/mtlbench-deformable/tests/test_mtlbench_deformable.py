"""The deformable interaction keeps mtlbench's interaction contract (mtlbench.testing)."""

import pytest

pytest.importorskip("mtlbench_deformable",
                    reason="the plugin is not installed: pip install ./plugins/mtlbench-deformable")


def test_deformable_keeps_the_interaction_contract():
    from mtlbench.testing import check_interaction

    report = check_interaction("deformable")
    assert "gradients reach target, guide and every parameter" in report.passed


def test_deformable_is_registered_by_its_plugin():
    from mtlbench.registry import INTERACTIONS

    source = INTERACTIONS.entry("deformable").source
    assert source == "plugin deformable (mtlbench-deformable)"
