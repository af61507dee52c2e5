"""The contract test kit: checks a plugin runs from its own pytest in one line.

    from mtlbench.testing import check_interaction

    def test_my_guidance_keeps_the_contract():
        check_interaction("my_guidance", identity_at_init=True)

Each ``check_*`` raises ``AssertionError`` naming the broken promise and returns a
:class:`Report` of what it checked and what it could only report (``torch.compile``, host syncs
off a GPU). Part of the public API (:mod:`mtlbench.api`, version 1).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mtlbench.registry import INTERACTIONS


@dataclass
class Report:
    """What a check verified (``passed``) and what it only observed (``notes``)."""

    name: str
    passed: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    def ok(self, what: str) -> None:
        self.passed.append(what)


def _factory(interaction: str | Callable[..., nn.Module]) -> tuple[str, Callable[..., nn.Module]]:
    if isinstance(interaction, str):
        INTERACTIONS.entry(interaction)  # an unknown name: one error with the close matches
        return interaction, lambda channels, **o: INTERACTIONS.build(interaction, channels, **o)
    return getattr(interaction, "__name__", "interaction"), interaction


def _seeded(factory: Callable[..., nn.Module], seed: int, channels: int, options: Mapping[str, Any]) -> nn.Module:
    torch.manual_seed(seed)
    return factory(channels, **options)


def _compile_note(module: nn.Module, *inputs: Tensor) -> str:
    """Whether torch.compile traces ``module`` in one graph (the eager backend: no compiler needed)."""
    try:
        import torch._dynamo as dynamo

        explained = dynamo.explain(module)(*inputs)
        breaks = explained.graph_break_count
        return "one graph" if breaks == 0 else f"{breaks} graph break(s): {explained.break_reasons[0].reason}"
    except Exception as exc:  # reported, not required
        return f"not traceable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def check_interaction(interaction: str | Callable[..., nn.Module], channels: int = 16, size: tuple[int, int] = (8, 12),
                      identity_at_init: bool | None = None, **options: Any) -> Report:
    """Check an interaction (a registered name or its factory) against the contract of
    ``docs/plugins.md``:

    - ``forward(target, source)`` returns the target's shape, finite, float32 in float32 and finite
      under bf16 autocast;
    - with ``identity_at_init`` (default: what a registered name declares, ``identity_at_init=True``
      in its registration), it returns ``target`` itself at initialisation;
    - gradients reach the target, the guide and every parameter (the parameters perturbed first,
      so that a zero-initialised gate does not hide a broken path);
    - a state dict round trip into a module built from another seed gives the same outputs;
    - two modules built from one seed give the same outputs;
    - ``attention_maps(target, source)``, where defined, is B×heads×positions×keys with rows
      summing to one;
    - reported, not required: host syncs in ``forward`` (checked on a GPU only) and whether
      ``torch.compile`` traces it in one graph.
    """
    name, factory = _factory(interaction)
    if identity_at_init is None:
        identity_at_init = isinstance(interaction, str) and bool(INTERACTIONS.entry(name).meta.get("identity_at_init"))
    report = Report(name)
    b, (h, w) = 2, size
    gen = torch.Generator().manual_seed(0)
    target, source = torch.randn(b, channels, h, w, generator=gen), torch.randn(b, channels, h, w, generator=gen)

    module = _seeded(factory, 0, channels, options).eval()
    assert isinstance(module, nn.Module), f"{name}: the factory returned {type(module).__name__}, not an nn.Module"
    with torch.no_grad():
        out = module(target, source)
    assert isinstance(out, Tensor) and out.shape == target.shape, \
        f"{name}: forward returned {getattr(out, 'shape', type(out))}, not the target's shape {tuple(target.shape)}"
    assert out.dtype == torch.float32 and torch.isfinite(out).all(), f"{name}: float32 output not finite float32"
    report.ok("shape and dtype (float32)")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = module(target, source)
    assert low.shape == target.shape and torch.isfinite(low.float()).all(), f"{name}: bf16 autocast output not finite"
    report.ok("bf16 autocast")
    if identity_at_init:
        torch.testing.assert_close(out, target, msg=lambda m: f"{name}: not the identity at initialisation: {m}")
        report.ok("identity at initialisation")

    trained = copy.deepcopy(module).train()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    t, s = target.clone().requires_grad_(), source.clone().requires_grad_()
    trained(t, s).square().mean().backward()
    for what, grad in (("target", t.grad), ("guide", s.grad)):
        assert grad is not None and grad.abs().sum() > 0, f"{name}: no gradient reaches the {what}"
    dead = [n for n, p in trained.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, f"{name}: parameters without gradient: {', '.join(dead)}"
    report.ok("gradients reach target, guide and every parameter")

    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    other = _seeded(factory, 1, channels, options).eval()
    other.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(other(target, source), out, msg=lambda m: f"{name}: state dict round trip: {m}")
    report.ok("state dict round trip")
    with torch.no_grad():
        twin = _seeded(factory, 0, channels, options).eval()(target, source)
    torch.testing.assert_close(twin, out, msg=lambda m: f"{name}: not deterministic under a seed: {m}")
    report.ok("deterministic under a seed")

    maps_fn = getattr(module, "attention_maps", None)
    if callable(maps_fn):
        with torch.no_grad():
            maps = maps_fn(target, source)
        assert maps.dim() == 4 and maps.shape[0] == b and maps.shape[2] == h * w, \
            f"{name}: attention_maps gave {tuple(maps.shape)}, not B×heads×{h * w}×keys"
        torch.testing.assert_close(maps.sum(-1), torch.ones_like(maps.sum(-1)),
                                   msg=lambda m: f"{name}: attention rows do not sum to one: {m}")
        report.ok("attention maps")

    if torch.cuda.is_available():
        gpu = copy.deepcopy(module).cuda()
        try:
            torch.cuda.set_sync_debug_mode("error")
            gpu(target.cuda(), source.cuda())
            report.notes["host syncs"] = "none in forward (CUDA)"
        except RuntimeError as exc:
            report.notes["host syncs"] = f"forward syncs with the host: {str(exc).splitlines()[0]}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
    else:
        report.notes["host syncs"] = "not checked (no GPU)"
    report.notes["torch.compile"] = _compile_note(module, target, source)
    return report
