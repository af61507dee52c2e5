"""Several processes training one model: torchrun's environment, the reductions the trainer
needs, and the launcher behind ``mtlbench run --nproc N``.

Data parallel, with the gradients averaged by mtlbench itself after the weighting's backward
(one flattened all-reduce per step) rather than by wrapping the model in
``DistributedDataParallel``: a gradient-level weighting must see the per-task gradients of the
whole global batch before it combines them (its Jacobian is averaged first, see
:meth:`Dist.average_`), which DDP's per-bucket hooks on the combined gradient cannot give.

A process that is not part of a group sees ``Dist()``: rank 0 of 1, every reduction the identity.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mtlbench.errors import MtlbenchError

# a rank that stops answering ends the job after this long instead of hanging it
TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class Dist:
    """This process's place in the group."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0, the only one that writes the run directory and reports progress."""
        return self.rank == 0

    def sum_(self, t: Tensor) -> Tensor:
        """``t`` summed over the ranks, in place."""
        if self.active:
            dist.all_reduce(t)
        return t

    def average_(self, t: Tensor) -> Tensor:
        """``t`` averaged over the ranks, in place."""
        if self.active:
            dist.all_reduce(t)
            t.div_(self.world)
        return t

    def any(self, flag: Tensor) -> bool:
        """Whether ``flag`` (a boolean scalar) is true on some rank (a host sync)."""
        f = flag.to(torch.int32).reshape(1)
        if self.active:
            dist.all_reduce(f, op=dist.ReduceOp.MAX)
        return bool(f.item())

    def cat(self, t: Tensor) -> Tensor:
        """Every rank's ``t`` concatenated along dim 0 in rank order (the first dims may differ)."""
        if not self.active:
            return t
        n = torch.tensor([t.shape[0]], device=t.device)
        sizes = [torch.zeros_like(n) for _ in range(self.world)]
        dist.all_gather(sizes, n)
        longest = int(max(int(s) for s in sizes))
        padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=t.device)
        padded[:t.shape[0]] = t
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:int(s)] for p, s in zip(parts, sizes)])

    def average_grads(self, params: Iterable[nn.Parameter]) -> None:
        """Average ``.grad`` over the ranks: one all-reduce per device and dtype."""
        if not self.active:
            return
        groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for p in params:
            if p.grad is not None:
                groups.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
        for grads in groups.values():
            flat = torch.cat([g.reshape(-1) for g in grads])
            self.average_(flat)
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()

    def average_buffers(self, module: nn.Module) -> None:
        """Average the floating-point buffers (BatchNorm running statistics) over the ranks, so
        that every rank evaluates, and rank 0 saves, the same model."""
        if self.active:
            for b in module.buffers():
                if b.is_floating_point():
                    self.average_(b.data)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def share(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (run directory, an error to raise everywhere)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block before the others (it fills caches they then read)."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()


def environment() -> Dist:
    """The group torchrun's variables describe (``Dist()`` outside torchrun)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise MtlbenchError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them)") from None
    return Dist(rank, world, local)


def init(device: str) -> Dist:
    """Join the group of this process (NCCL on GPUs, gloo on CPUs); ``Dist()`` when alone."""
    d = environment()
    if not d.active or dist.is_initialized():
        return d
    cuda = _on_gpu(device)
    if cuda:
        _one_gpu_each(device, f"{d.world} processes train")
        if d.local_rank >= torch.cuda.device_count():
            raise MtlbenchError(f"local rank {d.local_rank} has no GPU: this machine has "
                                f"{torch.cuda.device_count()}; start at most that many processes per node")
        torch.cuda.set_device(d.local_rank)
    backend = "nccl" if cuda else "gloo"
    available = dist.is_nccl_available() if cuda else dist.is_gloo_available()
    if not available:
        raise MtlbenchError(f"torch.distributed backend {backend} is not available in this PyTorch build")
    dist.init_process_group(backend, timeout=TIMEOUT, device_id=torch.device("cuda", d.local_rank) if cuda else None)
    return d


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _on_gpu(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def _one_gpu_each(device: str, processes: str) -> None:
    if device.startswith("cuda:"):
        raise MtlbenchError(f"train.device {device} names one GPU, but {processes}: use cuda "
                            f"(each process takes the GPU of its local rank)")


def check_nproc(nproc: int, device: str) -> None:
    """``nproc`` (processes to train with) fits the machine: at most one process per GPU, or per CPU core on the CPU."""
    if nproc < 1:
        raise MtlbenchError(f"nproc must be at least 1, got {nproc}")
    if nproc > 1:
        _one_gpu_each(device, f"{nproc} processes train")
    if _on_gpu(device):
        have = torch.cuda.device_count()
        if nproc > have:
            raise MtlbenchError(f"nproc {nproc} is more than the {have} GPU(s) torch sees: use {have} processes "
                                f"or fewer")
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if nproc > cores:
            raise MtlbenchError(f"nproc {nproc} is more than the {cores} CPU core(s) available: use {cores} "
                                f"processes or fewer")


def launch(nproc: int, args: list[str]) -> int:
    """``mtlbench run ARGS`` in ``nproc`` processes on this machine through torchrun's elastic
    launcher; returns its exit code (a failing rank ends the others)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "mtlbench", "run", *args]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, said quietly
    return subprocess.call(cmd, env=env)


class _GlobalBatchNorm(torch.autograd.Function):
    """Batch normalisation with the statistics of every rank's batch (N×C×…)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, eps: float, d: Dist
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        c = x.shape[1]
        dims = [i for i in range(x.dim()) if i != 1]
        xf = x.double()  # sums over the global batch, then one rounding back
        stats = torch.cat([xf.sum(dims), (xf * xf).sum(dims), xf.new_tensor([x.numel() // c])])
        d.sum_(stats)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        shape = [1, c] + [1] * (x.dim() - 2)
        invstd = (var + eps).rsqrt()
        xhat = ((xf - mean.view(shape)) * invstd.view(shape)).to(x.dtype)
        y = xhat * weight.view(shape) + bias.view(shape)
        ctx.save_for_backward(xhat, weight, invstd.to(x.dtype))
        ctx.d, ctx.n = d, n
        return y, mean.to(x.dtype), var.to(x.dtype), n

    @staticmethod
    def backward(ctx: Any, dy: Tensor, *_: Any) -> tuple[Tensor, Tensor, Tensor, None, None]:
        xhat, weight, invstd = ctx.saved_tensors
        c = dy.shape[1]
        dims = [i for i in range(dy.dim()) if i != 1]
        shape = [1, c] + [1] * (dy.dim() - 2)
        local = torch.cat([dy.sum(dims), (dy * xhat).sum(dims)])
        grad_bias, grad_weight = local[:c].clone(), local[c:].clone()  # this rank's share; averaged later
        total = ctx.d.sum_(local.double())
        mean_dy = (total[:c] / ctx.n).to(dy.dtype).view(shape)
        mean_dy_xhat = (total[c:] / ctx.n).to(dy.dtype).view(shape)
        dx = (weight * invstd).view(shape) * (dy - mean_dy - xhat * mean_dy_xhat)
        return dx, grad_weight, grad_bias, None, None


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """``BatchNorm2d`` over the global batch of a gloo group. PyTorch's ``SyncBatchNorm`` refuses
    CPU tensors, so ``--sync-bn`` could not be tested without a GPU; this one is used on CPUs only
    (GPUs use PyTorch's)."""

    dist: Dist = Dist()

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.dist.active):
            return super().forward(x)
        y, mean, var, n = _GlobalBatchNorm.apply(x, self.weight, self.bias, self.eps, self.dist)
        assert self.running_mean is not None and self.running_var is not None  # track_running_stats, checked
        assert self.num_batches_tracked is not None
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            # momentum None: the cumulative average, as BatchNorm2d
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean, alpha=m)
            self.running_var.mul_(1 - m).add_(var * n / (n - 1).clamp_min(1), alpha=m)
        return y


def sync_batchnorm(model: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """``model`` with its BatchNorm layers normalising over the global batch (``train.sync_bn``)."""
    if device.type == "cuda":
        from timm.layers import convert_sync_batchnorm  # keeps timm's BatchNormAct2d activations

        return convert_sync_batchnorm(model)
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and type(child) is not nn.BatchNorm2d:
                raise MtlbenchError(f"train.sync_bn on the CPU handles nn.BatchNorm2d only, and "
                                    f"{name + '.' if name else ''}{child_name} is a {type(child).__name__}: "
                                    f"train without it or on GPUs")
            if type(child) is nn.BatchNorm2d:
                if not (child.affine and child.track_running_stats):
                    raise MtlbenchError(f"train.sync_bn on the CPU needs affine BatchNorm with running statistics, "
                                        f"and {name + '.' if name else ''}{child_name} has none")
                new = CpuSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats)
                new.load_state_dict(child.state_dict())
                new.weight.requires_grad_(child.weight.requires_grad)  # frozen layers stay frozen
                new.bias.requires_grad_(child.bias.requires_grad)
                new.dist = d
                setattr(module, child_name, new.to(device))
    return model
