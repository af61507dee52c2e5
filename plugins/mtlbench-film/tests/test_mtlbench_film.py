"""The film interaction keeps mtlbench's interaction contract (mtlbench.testing)."""

import pytest

pytest.importorskip("mtlbench_film",
                    reason="the plugin is not installed: pip install ./plugins/mtlbench-film")


def test_film_keeps_the_interaction_contract():
    from mtlbench.testing import check_interaction

    report = check_interaction("film")
    assert "gradients reach target, guide and every parameter" in report.passed


def test_film_is_registered_by_its_plugin():
    from mtlbench.registry import INTERACTIONS

    source = INTERACTIONS.entry("film").source
    assert source == "plugin film (mtlbench-film)"
