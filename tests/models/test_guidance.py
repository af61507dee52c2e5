"""The task graph: guidance edges at strides 16, 8 and 4, [model.interaction] options, their errors."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest
import torch

from mtlbench import config as C
from mtlbench.ablation.plan import apply
from mtlbench.engine.build import build_model, resolve
from mtlbench.errors import MtlbenchError
from mtlbench.models.backbones import build_backbone
from mtlbench.models.guidance import Edge, task_graph
from mtlbench.models.multitask import POINTS
from mtlbench.registry import MODELS
from mtlbench.tasks import DatasetInfo, build_tasks
from tests.conftest import assert_bad_input, invoke, tiny_config

INFO = DatasetInfo(num_classes=40, max_depth=10.0)
TASKS = ("depth", "seg", "edge")


def mtinet(guidance, tasks=TASKS, **interaction_options):
    torch.manual_seed(0)
    return MODELS.get("mtinet")(build_tasks(tasks, INFO), build_backbone("test_resnet", width=16),
                                "guided_attention", guidance, interaction_options).eval()


def outputs_after_perturbing(net, key, x):
    with torch.no_grad():
        before = net(x)
        for p in net.guidance[key].out.parameters():  # the attention's output conv starts the residual branch
            torch.nn.init.normal_(p)
        return before, net(x)


def changed(before, after):
    return {t for t in before if not torch.allclose(before[t], after[t])}


@pytest.mark.parametrize(("edge", "key", "affected"), [
    ("seg->depth", "seg_to_depth", {"depth"}),
    ("seg->depth@8", "seg_to_depth_at8", {"depth"}),
    ("depth->edge@4", "depth_to_edge_at4", {"edge"}),
    ("edge->normals@4", "edge_to_normals_at4", {"normals"}),
])
def test_an_edge_refines_its_target_alone_at_its_stride(edge, key, affected, x):
    tasks = TASKS + ("normals",) if "normals" in edge else TASKS
    net = mtinet([edge], tasks)
    assert list(net.guidance) == [key]
    before, after = outputs_after_perturbing(net, key, x)
    assert changed(before, after) == affected


def test_a_fine_edge_reads_each_tasks_own_features_at_that_stride(x):
    net = mtinet(["seg->depth@8"])
    assert set(net.lateral["8"]) == {"seg_guide", "depth"}  # per-task features at stride 8, one per task involved
    seen = {}
    hooks = [net.lateral["8"][k].register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o))
             for k in ("seg_guide", "depth")]
    hooks.append(net.guidance["seg_to_depth_at8"].register_forward_hook(lambda m, i, o: seen.__setitem__("in", i)))
    net(x)
    for h in hooks:
        h.remove()
    target, guide = seen["in"]
    assert target.shape[-2:] == (8, 8)  # 64 / 8
    assert target is seen["depth"] and guide is seen["seg_guide"]


def test_edges_apply_in_order_so_a_cycle_is_served(x):
    """seg->depth then depth->seg: seg is guided by the refined depth, so the first edge reaches seg."""
    both = mtinet(["seg->depth", "depth->seg"])
    before, after = outputs_after_perturbing(both, "seg_to_depth", x)
    assert changed(before, after) == {"depth", "seg"}
    reversed_ = mtinet(["depth->seg", "seg->depth"])
    before, after = outputs_after_perturbing(reversed_, "seg_to_depth", x)
    assert changed(before, after) == {"depth"}


def test_all_is_every_ordered_pair_a_stride_can_refine():
    edges, off = task_graph(["all"], TASKS, POINTS)
    assert edges == [Edge(g, t, 16) for t in TASKS for g in TASKS if g != t] and off == []
    fine, _ = task_graph(["all@8", "all@4"], TASKS, POINTS)
    assert fine == [Edge("seg", "depth", 8), Edge("edge", "depth", 8),
                    Edge("seg", "depth", 4), Edge("edge", "depth", 4), Edge("depth", "edge", 4), Edge("seg", "edge", 4)]
    coarse_first, _ = task_graph(["seg->depth@4", "edge->depth"], TASKS, POINTS)
    assert [e.stride for e in coarse_first] == [16, 4]


def test_the_run_header_prints_the_graph():
    net = mtinet(["seg->depth", "edge->depth", "seg->depth@8"], dim=32, heads=2)
    assert net.notes == ["interaction guided_attention (dim=32, heads=2, grid=16)",
                         "guidance at stride 16: seg→depth, edge→depth", "guidance at stride 8: seg→depth"]
    assert net.guidance["seg_to_depth_at8"].heads == 2 and net.guidance["seg_to_depth"].dim == 32
    assert mtinet([]).notes == ["guidance: none"]


def test_the_default_edges_follow_the_tasks_and_written_edges_must_name_trained_ones():
    edges, off = task_graph(["seg->depth", "edge->depth"], ("depth", "seg"), POINTS, optional=True)
    assert edges == [Edge("seg", "depth", 16)] and off == ["edge→depth guidance: off (edge not requested)"]
    cfg = tiny_config(tasks=["depth", "seg"], model={"options": {"guidance": ["edge->depth"]}})
    with pytest.raises(MtlbenchError, match=r"'edge->depth' names edge, which this run does not train \(it trains "
                                            r"depth, seg\): drop the edge or add the task"):
        resolve(cfg)
    resolve(tiny_config(tasks=["depth"]))  # the default edges: a single-task run has none


@pytest.mark.parametrize(("edges", "message"), [
    (["depth->seg@8"], "seg's decoder reads no stride-8 features, so it can be refined at stride 16 only: "
                       'write "depth->seg@16"'),
    (["seg->depth@32"], "the stride after @ must be one of 16, 8, 4"),
    (["seg->seg"], "write GUIDE->TARGET[@STRIDE] with two different tasks"),
    (["seg->depth", "seg->depth@16"], "'seg->depth@16' repeats seg→depth of 'seg->depth': keep one"),
    (["seg->depth", "seg->depth"], "'seg->depth' is given twice: keep one"),
    (["all", "seg->depth"], "'seg->depth' repeats seg→depth of 'all'"),
    (["seg->depth", "all"], "'all' repeats seg→depth of 'seg->depth'"),
    (["all", "all"], "'all' is given twice"),
    (["seg->depth@"], "the stride after @ must be one of 16, 8, 4"),
    (["normals->depth"], "'normals->depth' names normals, which this run does not train"),
])
def test_bad_edges_are_one_line_naming_the_option_and_the_edge(edges, message):
    with pytest.raises(MtlbenchError) as caught:
        resolve(tiny_config(model={"options": {"guidance": edges}}))
    assert str(caught.value).startswith("model.options.guidance (model mtinet): guidance edge ")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_interaction_options_are_checked_spelled_out_and_built():
    cfg = tiny_config(model={"interaction": {"heads": 2}})
    resolve(cfg)
    assert cfg.model.interaction == {"dim": 64, "heads": 2, "grid": 16}
    assert "[model.interaction]\ndim = 64\nheads = 2\ngrid = 16" in C.dumps(cfg)
    assert C.loads(C.dumps(cfg)).model.interaction == cfg.model.interaction
    net = build_model(cfg, build_tasks(cfg.tasks, INFO), build_backbone("test_resnet", width=16))
    assert {m.heads for m in net.guidance.values()} == {2}
    with pytest.raises(MtlbenchError, match=r"guided_attention takes no option 'head'; did you mean 'heads'"):
        resolve(tiny_config(model={"interaction": {"head": 2}}))
    with pytest.raises(MtlbenchError, match=r"model hps has no interaction points, so \[model.interaction\] \(dim\)"):
        resolve(tiny_config(model={"name": "hps", "interaction": {"dim": 8}}))
    with pytest.raises(MtlbenchError, match=r"model.interaction is now model.options.interaction"):
        C.loads('[model]\ninteraction = "guided_attention"\n')


def test_models_without_interactions_write_no_interaction_table():
    cfg = tiny_config(model={"name": "hps"})
    resolve(cfg)
    assert "interaction" not in C.dumps(cfg)


def test_choosing_another_interaction_drops_the_options_of_the_one_it_replaces():
    cfg = tiny_config(model={"interaction": {"heads": 2}})
    resolve(cfg)
    film = apply(cfg, {"model.options.interaction": "film"}, "cell")
    assert film.model.interaction == {}
    kept = apply(cfg, {"model.options.interaction": "guided_attention", "model.interaction.dim": 32}, "cell")
    assert kept.model.interaction == {"dim": 32, "heads": 2, "grid": 16}
    both = apply(cfg, {"model.interaction.hidden": 8, "model.options.interaction": "film"}, "cell")
    assert both.model.interaction == {"hidden": 8}


def test_run_refuses_a_bad_interaction_option_and_writes_nothing(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(C.dumps(tiny_config(model={"interaction": {"grid": 0}})))
    result = invoke("run", "--config", config, "--run-dir", tmp_path / "run")
    assert_bad_input(result, "model.interaction.grid")
    assert not (tmp_path / "run").exists()


def test_eval_figures_draw_each_edges_attention_with_its_stride(x, monkeypatch):
    import numpy as np

    from mtlbench.models.base import capture_attention
    from mtlbench.report import samples

    net = mtinet(["seg->depth", "edge->depth@8"])
    with capture_attention(net) as maps:
        net(x[:1])
    drawn = {}
    monkeypatch.setattr(samples, "attention_figure", lambda rgb, shown, **kw: drawn.update(shown))
    samples.attention_panels(np.zeros((64, 64, 3), np.uint8), maps)
    assert {k: v.shape for k, v in drawn.items()} == {"seg -> depth": (4, 4), "edge -> depth @8": (8, 8)}
    # the centre query's row of the stride-8 edge's attention: keys pooled to at most 16×16 = the 8×8 map
    att = maps["guidance.edge_to_depth_at8"][0].mean(0)
    np.testing.assert_allclose(drawn["edge -> depth @8"], att[4 * 8 + 4].reshape(8, 8).numpy())


def test_mtinet_with_edges_at_every_stride_keeps_the_model_contract():
    from mtlbench.testing import check_model

    # seg and depth only guide at stride 8 and 4: their features there are reached by the targets' losses
    report = check_model("mtinet", guidance=["seg->depth", "seg->depth@8", "depth->edge@4"],
                         interaction_options={"heads": 2, "dim": 8}, compile_note=False)
    assert "every parameter is reached; every task's loss reaches its own branch and the shared ones" in report.passed
    net = mtinet(["seg->depth@8"])
    assert not {id(p) for p in net.task_parameters("seg")} & {id(p) for p in net.lateral["8"].parameters()}


def test_a_constraint_between_interaction_options_stops_at_resolve():
    with pytest.raises(MtlbenchError, match=r"^model.interaction \(interaction guided_attention\): dim 10 must be "
                                            r"divisible by heads 3$"):
        resolve(tiny_config(model={"interaction": {"dim": 10, "heads": 3}, "options": {"guidance": []}}))


def test_a_run_made_before_edges_had_to_name_trained_tasks_still_rebuilds():
    old = tiny_config(tasks=["depth", "seg"], model={"options": {"guidance": ["seg->depth", "normals->depth"]}})
    with pytest.raises(MtlbenchError, match="names normals, which this run does not train"):
        resolve(copy.deepcopy(old))  # a new run
    resolve(old, new=False)  # eval, predict, resume: the run as it was made
    net = build_model(old, build_tasks(old.tasks, INFO), build_backbone("test_resnet", width=16))
    assert list(net.guidance) == ["seg_to_depth"]
    assert net.notes[-1] == "normals→depth guidance: off (normals not requested)"


def test_interaction_options_survive_settings_that_keep_the_interaction():
    from mtlbench.workflows.configure import configure

    unresolved = C.from_dict({"model": {"interaction": {"grid": 8}}}, C.preset("quick"))
    assert apply(unresolved, {"model.options.interaction": "guided_attention"}, "cell").model.interaction == {"grid": 8}
    assert apply(unresolved, {"model.options.interaction": "film"}, "cell").model.interaction == {}
    whole = apply(unresolved, {"model.options.interaction": "film", "model.interaction": {"hidden": 8}}, "cell")
    assert whole.model.interaction == {"hidden": 8}
    cfg = tiny_config(model={"interaction": {"grid": 8}})
    resolve(cfg)
    path = Path(tempfile.mkdtemp()) / "c.toml"
    path.write_text(C.dumps(cfg))
    same = configure(None, path, {"model.options.interaction": "guided_attention"})
    assert same.model.interaction == {"dim": 64, "heads": 1, "grid": 8}
    with pytest.warns(UserWarning, match="'film' replaces 'guided_attention', which the configuration names"):
        other = configure(None, path, {"model.options.interaction": "film"})
    assert other.model.interaction == {"hidden": 64}  # film's defaults, spelled out afresh
