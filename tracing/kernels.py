"""Which kernels run the model's norms, rotary embedding and MLP activation while tracing.

"torch": the model's own code. "liger": Liger Kernel's fused Triton RMSNorm, rotary embedding and
SwiGLU patched into the loaded model, one pass each where the model's code makes several (the eager
engine's largest cost after the matrix products; BENCHMARKS.md). The model's modules stay in place, so
the tracing hooks and a reference loop run on the same model; results differ by float rounding only.
Liger replaces the rotary function of the model's family in transformers for the whole process, so
every model of that family in the process then needs CUDA too.
"""

from __future__ import annotations

import importlib.util
import logging

from torch import nn

__all__ = ["KERNELS", "check_kernels", "use_kernels"]

logger = logging.getLogger(__name__)

KERNELS = ("torch", "liger")
LIGER_INSTALL = "pip install 'known-speech[gpu]' (liger-kernel, pinned in constraints.txt)"


def check_kernels(kernels: str, device: str, compile: bool = False) -> None:
    """Refuse a choice that cannot run, before any model loads: one line naming the flag and the fix."""
    if kernels not in KERNELS:
        raise ValueError(f"--kernels {kernels}: choose from {', '.join(KERNELS)}")
    if kernels == "torch":
        return
    if not str(device).startswith("cuda"):
        raise ValueError(f"--kernels {kernels} runs Triton kernels on CUDA only; use --device cuda or --kernels torch")
    if compile:
        raise ValueError(f"--kernels {kernels} with --compile: torch.compile cannot trace Liger's RMSNorm and runs "
                         "slower than either alone (BENCHMARKS.md); choose one")
    if importlib.util.find_spec("liger_kernel") is None:
        raise ValueError(f"--kernels {kernels}: Liger Kernel is not installed; {LIGER_INSTALL}")


def use_kernels(model: nn.Module, kernels: str, compile: bool = False) -> str:
    """Patch `kernels` into the loaded `model` (a transformers causal LM); returns what now runs, for the
    results' provenance ("torch" or "liger-kernel <version>")."""
    check_kernels(kernels, str(next(model.parameters()).device), compile)
    if kernels == "torch":
        return kernels
    from importlib import metadata

    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN, _apply_liger_kernel_to_instance

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        raise ValueError(f"--kernels {kernels}: Liger Kernel has no kernels for model_type={model_type!r}; "
                         "use --kernels torch")
    # the loss kernels stay off: they replace the model's forward, which the filters' generation calls
    _apply_liger_kernel_to_instance(model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=False)
    version = f"liger-kernel {metadata.version('liger-kernel')}"
    logger.info("%s: RMSNorm, rotary embedding and SwiGLU of %s patched in", version, model_type)
    return version
