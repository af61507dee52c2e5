"""The interface every streamed metric follows."""

from __future__ import annotations

from torch import Tensor


class Metric:
    """``update`` once per batch, ``compute`` once per split."""

    names: tuple[str, ...] = ()  # the keys ``compute`` returns
    higher_is_better: frozenset[str] = frozenset()  # those of them where larger is better

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError
