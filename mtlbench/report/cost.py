"""Tables of what :func:`mtlbench.cost.cost_report` measured: a model's cost, and a multi-task
model against the sum of its single-task models (the "reduced computational redundancy" *Beneath
the Surface* claims)."""

from __future__ import annotations

from mtlbench.cost import CostReport, ModelCost
from mtlbench.report.tables import TableData

# ----------------------------------------------------------------------------- tables


COLUMNS = ["model", "params M", "GFLOP/img", "act. MiB/img", "ms/img"]


def _cells(c: ModelCost) -> list[str]:
    return [c.label, f"{c.params / 1e6:.2f}", f"{c.flops / 1e9:.2f}", f"{c.act_bytes / 2**20:.1f}",
            f"{c.latency_s * 1e3:.1f}"]


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def cost_tables(report: CostReport) -> list[TableData]:
    """The cost table, and the multi-task against single-task table when there are several tasks."""
    r = report
    setting = (f"{r.backbone}, {r.size}×{r.size}, batch {r.batch_size}, {r.device}"
               + (f" ({r.threads} threads)" if r.device == "cpu" else "") + ", seg 40 classes")
    caption = (f"params M: parameters in millions. GFLOP/img: torch.utils.flop_counter, conv/matmul only, 2 per "
               f"multiply-add. act. MiB/img: {r.memory_method}. ms/img: median of {r.repeats} timed inference "
               f"passes after {r.warmup} warm-up passes.")
    tables = [TableData(f"cost of {r.model} on {','.join(r.tasks)} ({setting})", caption, list(COLUMNS),
                        [_cells(r.main)])]
    s = r.summed
    if s is not None:
        m = r.main
        rows = [_cells(c) for c in r.singles] + [_cells(s), _cells(m),
                                                 ["ratio multi / sum", _ratio(m.params, s.params),
                                                  _ratio(m.flops, s.flops), _ratio(m.act_bytes, s.act_bytes),
                                                  _ratio(m.latency_s, s.latency_s)]]
        n = len(r.singles)
        note = "Single-task rows: the same model given one task; ratio: multi-task row / sum row. "
        tables.append(TableData(f"{r.model} multi-task against its single-task models ({setting})", note + caption,
                                list(COLUMNS), rows, sections=[n, n + 2]))
    return tables
