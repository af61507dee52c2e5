"""``mtlbench eval``: re-evaluate a run's checkpoint on a split, optionally drawing figures."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from torch import Tensor

from mtlbench.engine.checkpoints import read_log
from mtlbench.engine.evaluation import evaluate
from mtlbench.engine.runs import ensure_folder, open_evaluation, record_evaluation
from mtlbench.errors import MtlbenchError
from mtlbench.models.base import capture_attention
from mtlbench.report.figures import save_png, training_curves, weight_curves
from mtlbench.report.samples import write_attention_figure, write_sample_figures


def evaluate_with_figures(run_dir: Path, split: str = "test", checkpoint: str = "best", device: str | None = None,
                          eval_options: dict[str, Any] | None = None, figures: int = 0,
                          on_batch: Callable[[], None] | None = None,
                          progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint of ``run_dir`` on ``split``, store it in ``metrics.json`` and return the
    whole file. ``figures`` > 0 also draws that many samples, the attention maps of the first and
    the training curves into ``run_dir/figures``."""
    if figures < 0:
        raise MtlbenchError(f"figures must be 0 or more, got {figures}")
    ev = open_evaluation(run_dir, split, checkpoint, device, eval_options, progress)
    folder = ev.run.figures
    if figures:
        ensure_folder(folder, "figures folder")
    drawn: list[Path] = []
    attention: AbstractContextManager[dict[str, Tensor]] = (capture_attention(ev.parts.model) if figures
                                                             else nullcontext({}))
    with attention as maps:

        def each(batch: dict[str, Tensor], out: dict[str, Any], preds: dict[str, Tensor]) -> None:
            if figures > len(drawn):
                if not drawn:
                    name = f"{split}-{int(batch['index'][0]):05d}_attention.png"
                    write_attention_figure(ev.parts, batch, preds, maps, folder / name)
                drawn.extend(write_sample_figures(ev.parts, batch, preds, folder, split, figures - len(drawn)))
            if on_batch is not None:
                on_batch()

        result = evaluate(ev.parts, ev.dataset, ev.autocast(), on_batch=each, plan=ev.plan)
    metrics = record_evaluation(ev, result)
    if figures and ev.run.log.is_file():
        records = read_log(ev.run.log)
        if records:
            save_png(training_curves(records, title=f"{ev.parts.cfg.model.name} training"), folder / "curves.png")
        if any("weights" in r for r in records):
            save_png(weight_curves(records, ev.parts.cfg.weighting.name), folder / "weights.png")
    return metrics
