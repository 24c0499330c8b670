"""Data parallel inside one run, with accelerate (the pattern of lm-eval's HF backend,
`lm_eval/models/huggingface.py`).

Under `accelerate launch --multi_gpu --num_processes N -m boe_eval.harness.cli ...` (or torchrun /
mpirun) every process builds the same job; lm-eval's evaluator gives each rank the documents
`rank, rank + N, ...` (because the LM reports rank and world size); the per-request compute records
are gathered on rank 0 and only rank 0 writes rows. Without CUDA the processes use gloo on the CPU.
(accelerate 1.x's `launch --cpu --num_processes N` starts one process unless an MPI hostfile is
configured, so on a CPU-only machine launch with `--multi_gpu`, which uses torch.distributed.run.)
Launched plainly (one process), nothing is initialised and every collective is a no-op: in
particular `barrier` never calls `wait_for_everyone` on a missing accelerator (the crash in LLaDA's
`eval_llada.py`, docs/references.md §1).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run (rank 0 of 1 when not launched by accelerate)."""

    rank: int = 0
    world_size: int = 1
    accelerator: Any = None  #: `accelerate.Accelerator`, only when world_size > 1
    device: torch.device | None = None  #: the device accelerate assigned to this process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 and self.accelerator is not None

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenation of `tensor` from every rank (lm-eval uses it to pad ranks to equal work)."""
        return self.accelerator.gather(tensor) if self.enabled else tensor

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        """[obj of rank 0, obj of rank 1, ...] on `dst`, None elsewhere; [obj] when single-process."""
        if not self.enabled:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.rank == dst else None
        torch.distributed.gather_object(obj, object_gather_list=out, dst=dst)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """`obj` as given on rank `src`, on every rank."""
        if not self.enabled:
            return obj
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([obj], from_process=src)[0]

    def barrier(self) -> None:
        if self.enabled:
            self.accelerator.wait_for_everyone()

    def place(self, device: str) -> str:
        """The device a model should live on in this process: accelerate's per-process device
        (`cuda:<local rank>`) when the run asks for a GPU under data parallel, else `device`."""
        if self.enabled and str(device).startswith("cuda") and self.device is not None:
            return str(self.device)
        return str(device)


#: environment variables that carry the process count (torch.distributed.run, then MPI launchers),
#: the ones accelerate itself reads
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_world_size() -> int:
    """Number of processes the launcher (accelerate launch, torchrun, mpirun) started; 1 otherwise."""
    for name in WORLD_SIZE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 1


def export_submitit_environment() -> None:
    """Inside a submitit job with several tasks (hydra-submitit-launcher `tasks_per_node=N`), export
    the torch.distributed variables (RANK, WORLD_SIZE, MASTER_ADDR, ...) from submitit's job
    environment, so the N tasks of one grid cell form one data-parallel run. Every GPU of the node
    stays visible (accelerate puts rank r on cuda:<local rank>)."""
    if not os.environ.get("SUBMITIT_EXECUTOR") or "WORLD_SIZE" in os.environ:
        return
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


@functools.lru_cache(maxsize=1)
def data_parallel() -> DataParallel:
    """The process group of this run, initialised once (gloo on CPU, NCCL on GPUs, as accelerate
    chooses). Without a multi-process launcher no accelerator is created."""
    export_submitit_environment()
    if launched_world_size() <= 1:
        return DataParallel()
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    # cpu=True without CUDA: accelerate then sets up MULTI_CPU (gloo) instead of silently running
    # every process as a separate single-process job. Long timeout: ranks wait for each other while
    # the slowest one decodes its share.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=12))],
    )
    if accelerator.num_processes <= 1:
        return DataParallel()
    return DataParallel(
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        accelerator=accelerator,
        device=accelerator.device,
    )


__all__ = ["DataParallel", "data_parallel", "export_submitit_environment", "launched_world_size"]
