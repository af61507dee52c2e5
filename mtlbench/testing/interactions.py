"""check_interaction: the interaction contract."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from mtlbench.registry import INTERACTIONS
from mtlbench.testing.common import Report, _compile_note, _declared, _host_sync_note, _named, _saved

pass


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
    name, factory = _named(INTERACTIONS, interaction, "interaction")
    if identity_at_init is None:
        identity_at_init = bool(_declared(INTERACTIONS, interaction, "identity_at_init"))
    report = Report(name)
    b, (h, w) = 2, size
    gen = torch.Generator().manual_seed(0)
    target, source = torch.randn(b, channels, h, w, generator=gen), torch.randn(b, channels, h, w, generator=gen)

    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return factory(channels, **options)

    module = build(0).eval()
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

    # everything a module computes with must travel in its state dict: one that keeps state
    # elsewhere (a plain tensor attribute, a counter) would resume or load as another module
    stepped = trained.eval()
    with torch.no_grad():
        expected = stepped(target, source)
    fresh = build(1).eval()
    fresh.load_state_dict(_saved(stepped))
    with torch.no_grad():
        torch.testing.assert_close(fresh(target, source), expected, msg=lambda m: (
            f"{name}: state outside its state dict: a module given the state dict of a trained one computes "
            f"another output (register tensors as parameters or buffers): {m}"))
    report.ok("no state outside the state dict")

    other = build(1).eval()
    other.load_state_dict(_saved(module))
    with torch.no_grad():
        torch.testing.assert_close(other(target, source), out, msg=lambda m: f"{name}: state dict round trip: {m}")
    report.ok("state dict round trip")
    with torch.no_grad():
        twin = build(0).eval()(target, source)
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

    report.notes["host syncs"] = _host_sync_note(module, target, source)
    report.notes["torch.compile"] = _compile_note(module, target, source)
    return report
