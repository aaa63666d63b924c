"""Global precision flags: the trusted reference and the sandbox worker set and read them alike.

fp32 means fp32 on both sides (TF32 off, "highest" matmul precision); the worker
snapshots the flags before a candidate runs and names those it finds changed after.
Imports only torch: it runs inside the sandbox too, and the trusted side imports it
without importing the worker's entry module.
"""
import torch


def strict_precision_flags() -> None:
    """fp32 means fp32: the reference and the baselines run the same way."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def precision_flags() -> dict:
    matmul = torch.backends.cuda.matmul
    flags = {
        "torch.backends.cuda.matmul.allow_tf32": matmul.allow_tf32,
        "torch.backends.cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "allow_fp16_reduced_precision_reduction": matmul.allow_fp16_reduced_precision_reduction,
        "allow_bf16_reduced_precision_reduction": matmul.allow_bf16_reduced_precision_reduction,
    }
    # torch 2.9+ spells the same policy per backend as `fp32_precision`
    for owner, name in ((torch.backends, "torch.backends"), (matmul, "torch.backends.cuda.matmul"),
                        (torch.backends.cudnn, "torch.backends.cudnn"),
                        (getattr(torch.backends.cudnn, "conv", None), "torch.backends.cudnn.conv"),
                        (getattr(torch.backends, "mkldnn", None), "torch.backends.mkldnn")):
        value = getattr(owner, "fp32_precision", None) if owner is not None else None
        if value is not None:
            flags[f"{name}.fp32_precision"] = str(value)
    return flags
