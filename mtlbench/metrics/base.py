"""The interface every streamed metric follows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtlbench.metrics.records import find

if TYPE_CHECKING:
    from torch import Tensor


class Metric:
    """``update`` once per batch, ``compute`` once per split."""

    task: str = ""  # whose records (mtlbench.metrics.records) describe the keys
    names: tuple[str, ...] = ()  # the keys ``compute`` returns

    @property
    def higher_is_better(self) -> frozenset[str]:
        """Those of ``names`` where larger is better, as their records say. A metric of a task
        without records may override this with a class attribute."""
        return frozenset(k for k in self.names if (r := find(self.task, k)) is not None and r.higher_is_better)

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError
