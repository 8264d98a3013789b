"""Data-parallel training across processes (``torchrun``), one code path for 1..N processes.

Gradients are averaged across ranks after each phase's backward with one coalesced
``all_reduce`` (as StyleGAN2-ADA does), rather than wrapping modules in
``DistributedDataParallel``: GAN phases run D several times per step, freeze D during the G
step and need double backward for R1 / WGAN-GP, which DDP's reducer does not support. BatchNorm
running statistics are averaged too, so every rank holds identical weights. Backends: NCCL on
GPU, gloo on CPU. Without ``torchrun`` (no ``WORLD_SIZE``), the world has size 1 and every
collective is a no-op.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistContext:
    """Where this process sits: ``rank`` of ``world_size``, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool  # True when this context initialised the process group (and must destroy it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def launched_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment, (0, 1, 0) without it."""
    return (
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's GPU when CUDA is available, else CPU; ``cuda`` without CUDA is an error."""
    if preference not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be one of ['auto', 'cpu', 'cuda'], got {preference!r}")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Join the torchrun process group when launched by torchrun (else a world of one)."""
    rank, world, local = launched_world()
    device = pick_device(device_preference, local)
    owns = False
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return DistContext(rank, world, local, device, owns)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group if this context created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()


def broadcast_module(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not ctx.active:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def _flat_all_reduce_mean(tensors: list[torch.Tensor], ctx: DistContext) -> None:
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def average_gradients(params: Iterable[nn.Parameter], ctx: DistContext) -> None:
    """Average ``.grad`` of ``params`` across ranks (one coalesced all_reduce); None grads become 0."""
    if not ctx.active:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    _flat_all_reduce_mean([p.grad for p in params], ctx)  # type: ignore[misc]


def average_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Average floating-point buffers (BatchNorm running statistics) across ranks."""
    if not ctx.active:
        return
    with torch.no_grad():
        _flat_all_reduce_mean([b for b in module.buffers() if b.is_floating_point()], ctx)


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when ``flag`` is True on at least one."""
    if not ctx.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_scalars(scalars: dict[str, torch.Tensor], ctx: DistContext) -> dict[str, float]:
    """Average named scalar tensors across ranks -> plain floats (same on every rank)."""
    names = sorted(scalars)
    if not names:
        return {}
    vec = torch.stack([scalars[k].detach().float().reshape(()) for k in names]).to(ctx.device)
    if ctx.active:
        dist.all_reduce(vec, op=dist.ReduceOp.SUM)
        vec /= ctx.world_size
    return dict(zip(names, vec.cpu().tolist(), strict=True))


def gather_states(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` (tensors, numbers, strings, lists, dicts), in rank order.

    Sent as ``torch.save`` bytes and read back with ``weights_only=True`` (pickled tensors inside
    ``all_gather_object`` do not round-trip on every torch version).
    """
    if not ctx.active:
        return [obj]
    buf = io.BytesIO()
    torch.save(obj, buf)
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, buf.getvalue())
    return [torch.load(io.BytesIO(b), weights_only=True) for b in out]


def shard(n: int, rank: int, world_size: int) -> range:
    """Indices of ``range(n)`` handled by ``rank``: contiguous blocks, no overlap, no gaps."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad rank {rank} for world size {world_size}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))
