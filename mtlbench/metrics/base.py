"""The interface every streamed metric follows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from mtlbench.metrics.records import find

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class Group(Protocol):
    """The processes a split was evaluated by (:class:`mtlbench.engine.distributed.Dist`)."""

    @property
    def active(self) -> bool: ...  # more than one process
    def sum_(self, t: Tensor) -> Tensor: ...
    def cat(self, t: Tensor) -> Tensor: ...


class Metric:
    """``update`` once per batch, ``reduce`` once when several processes shared the split, then
    ``compute`` once.

    State stays on the device of the updates (no host sync per batch). ``summed`` names the
    tensor attributes that add up over processes; a metric with other state overrides
    :meth:`reduce`.
    """

    task: str = ""  # whose records (mtlbench.metrics.records) describe the keys
    names: tuple[str, ...] = ()  # the keys ``compute`` returns
    summed: tuple[str, ...] = ()

    def reduce(self, group: Group, device: torch.device) -> None:
        """Every process's state combined into each (all take part, updated or not)."""
        if group.active and not self.summed:
            raise NotImplementedError(f"{type(self).__name__} declares no summed state and no reduce(): it cannot "
                                      f"be computed over several processes")
        for name in self.summed:
            setattr(self, name, group.sum_(getattr(self, name).to(device)))

    @property
    def higher_is_better(self) -> frozenset[str]:
        """Those of ``names`` where larger is better, as their records say. A metric of a task
        without records may override this with a class attribute."""
        return frozenset(k for k in self.names if (r := find(self.task, k)) is not None and r.higher_is_better)

    def workspace(self, rows: int, b: int, n: int, device: torch.device) -> Tensor:
        """A rows×B×N float64 buffer kept across batches of one shape: fresh large tensors per op
        cost more than the math."""
        ws: Tensor | None = getattr(self, "_ws", None)
        if ws is None or ws.shape != (rows, b, n) or ws.device != device:
            import torch  # the module imports no torch at import time (records are read without it)

            ws = self._ws = torch.empty(rows, b, n, dtype=torch.float64, device=device)
        return ws

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, pred: Tensor, batch: dict[str, Tensor]) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError
