"""Data-parallel plumbing: process-group set-up from torchrun's environment and a gather
of feature rows across processes that keeps gradients.

In a single process (no torchrun) everything here is a no-op.
"""

import os
from dataclasses import dataclass
from typing import List, Tuple

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    # launched by torchrun (WORLD_SIZE set): a process group is joined even by one process,
    # so that one GPU runs the DistributedDataParallel path that many GPUs run
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """The rank layout torchrun exports (RANK, WORLD_SIZE, LOCAL_RANK); one process without."""
    try:
        return DistInfo(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            enabled="WORLD_SIZE" in os.environ,
        )
    except ValueError as error:
        raise SystemExit(
            f"error: RANK/WORLD_SIZE/LOCAL_RANK must be integers ({error}); launch with torchrun"
        ) from None


def init_from_env(device: str) -> DistInfo:
    """Join the process group torchrun describes: NCCL on CUDA, gloo on CPU.

    Returns the layout; on CUDA the current device becomes cuda:LOCAL_RANK. Without torchrun
    (WORLD_SIZE unset) no group is created; under torchrun one process makes a group of one.
    """
    info = env_info()
    if not info.enabled:
        return info
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if cuda else "gloo", rank=info.rank, world_size=info.world_size
        )
    return info


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def backend() -> str:
    """The process group's backend (nccl, gloo), or "none" without a group."""
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else "none"


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class _GatherRows(torch.autograd.Function):
    """Concatenate every process's rows; backward sums the gradient over processes.

    Every process's loss depends on every process's rows, so the gradient of the (summed)
    loss with respect to this process's rows is the sum of all processes' gradients for that
    slice: an all-reduce of the full gradient, then our slice.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: List[int], rank: int) -> torch.Tensor:
        ctx.sizes = sizes
        ctx.rank = rank
        longest = max(sizes)
        padded = tensor.new_zeros((longest,) + tuple(tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[:size] for part, size in zip(parts, sizes)], dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def gather_with_grad(tensor: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """All processes' rows of ``tensor`` concatenated in rank order, and our rows' offset.

    Processes may hold different numbers of rows (a batch loses rows whose image turned out
    unreadable). Gradients flow back to every process's rows. In a single process this returns
    the tensor itself and offset 0.
    """
    if not is_distributed():
        return tensor, 0
    rank = dist.get_rank()
    count = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    counts = [torch.empty_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    return _GatherRows.apply(tensor, sizes, rank), sum(sizes[:rank])


def all_mean(values: List[float], device: torch.device) -> List[float]:
    """Average numbers over processes (for logging); identity in one process."""
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(v) / dist.get_world_size() for v in tensor.tolist()]


def all_sum(value: float, device: torch.device) -> float:
    """Sum a number over processes (for logging and counters); identity in one process."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item())
