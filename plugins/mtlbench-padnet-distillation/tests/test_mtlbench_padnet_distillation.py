"""The padnet_distillation interaction keeps mtlbench's interaction contract (mtlbench.testing)."""

import pytest

pytest.importorskip("mtlbench_padnet_distillation",
                    reason="the plugin is not installed: pip install ./plugins/mtlbench-padnet-distillation")


def test_padnet_distillation_keeps_the_interaction_contract():
    from mtlbench.testing import check_interaction

    report = check_interaction("padnet_distillation")
    assert "gradients reach target, guide and every parameter" in report.passed


def test_padnet_distillation_is_registered_by_its_plugin():
    from mtlbench.registry import INTERACTIONS

    source = INTERACTIONS.entry("padnet_distillation").source
    assert source == "plugin padnet_distillation (mtlbench-padnet-distillation)"
