"""Sharing a run's items between torchrun ranks, and the process group they agree through."""

from __future__ import annotations

import os

import torch

__all__ = ["Distributed", "balanced_shares", "trace_cost"]


class Distributed:
    """Rank and world size from torchrun's environment; a process group only when there are several."""

    def __init__(self, device: str):
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.device = f"cuda:{self.local_rank}" if device == "cuda" else device
        if self.world_size > 1 and not torch.distributed.is_initialized():
            if device.startswith("cuda"):
                torch.cuda.set_device(self.local_rank)
            torch.distributed.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def broadcast(self, value: object) -> object:
        """Rank 0's value on every rank: decisions that must agree even if ranks saw different files."""
        if self.world_size == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: object) -> list[object]:
        if self.world_size == 1:
            return [value]
        gathered: list[object] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, value)
        return gathered


def trace_cost(record: dict, control: bool) -> float:
    """Rough engine work of one item, estimated from its record before any input is made (each rank
    prepares only its own share): each restored position from the subject on runs the rest of the
    prompt, once per span traced. Positions: 25 per second of speech, else one per 4 characters."""
    if record.get("duration_s"):
        length, start = 25.0 * float(record["duration_s"]), 25.0 * float((record.get("subject_time_span") or [0])[0])
    else:
        length, start = len(record["prompt"]) / 4, (record.get("subject_char_span") or [0])[0] / 4
    return float((1 + control) * (length - start + 1) * length)


def balanced_shares(costs: dict[int, float], world_size: int) -> list[list[int]]:
    """Items to ranks, costliest first to the least loaded rank (LPT), each share in id order: ranks
    finish together, where round-robin leaves one rank with the long prompts."""
    loads = [0.0] * world_size
    shares: list[list[int]] = [[] for _ in range(world_size)]
    for known_id in sorted(costs, key=lambda i: (-costs[i], i)):
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        loads[rank] += costs[known_id]
        shares[rank].append(known_id)
    return [sorted(share) for share in shares]
