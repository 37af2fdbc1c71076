"""torch (``--library torch``): torch.nn.functional and torch.logsumexp, on the CPU or the
first CUDA device (``--device cuda``). bfloat16 arrays go through float32 into torch.bfloat16
(exact: every bfloat16 value is a float32), results come back the same way."""

from __future__ import annotations

import numpy as np

from . import Adapter, Unavailable


def load(device: str) -> dict:
    import torch  # noqa: F401 - ImportError when missing

    if device == "cuda":
        _check_cuda()
        return {"cuda": _cuda_name()}
    return {}


def _probe(fn, what: str):
    """fn() in a forked child (CUDA must not be initialised in numstab's own process, or no
    forked child could use it): its result, or Unavailable with the reason."""
    from ..adapters import isolate
    from ..errors import CallableError

    try:
        return isolate(fn, what, timeout=120)().item()
    except CallableError as exc:
        raise Unavailable(str(exc)) from None


def _check_cuda() -> None:
    def avail():
        import torch

        return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0

    if not _probe(avail, "torch.cuda.is_available()"):
        raise Unavailable("no CUDA device here (torch.cuda.is_available() is False); run on a machine "
                          "with an NVIDIA GPU and a CUDA build of torch")


def _cuda_name() -> str:
    def name():
        import torch

        return torch.cuda.get_device_name(0)

    return str(_probe(name, "torch.cuda.get_device_name(0)"))


def to_tensor(x, device: str = "cpu"):
    import ml_dtypes
    import torch

    if x.dtype == np.dtype(ml_dtypes.bfloat16):
        t = torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16)
    else:
        t = torch.from_numpy(np.ascontiguousarray(x))
    return t.to(device) if device != "cpu" else t


def to_numpy(t) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        t = t.to(torch.float32)
    return t.numpy()


def adapters(function: str, device: str) -> list[Adapter]:
    import torch
    import torch.nn.functional as F

    def softmax(x):
        return to_numpy(F.softmax(to_tensor(x, device), dim=-1))

    def log_softmax(x):
        return to_numpy(F.log_softmax(to_tensor(x, device), dim=-1))

    def logsumexp(x):
        return to_numpy(torch.logsumexp(to_tensor(x, device), dim=-1))

    def cross_entropy(x, target):
        t = torch.from_numpy(np.asarray(target, dtype=np.int64)).to(device)
        return to_numpy(F.cross_entropy(to_tensor(x, device), t, reduction="none"))

    table = {
        "softmax": [Adapter("torch.nn.functional.softmax", "torch.nn.functional.softmax(x, dim=-1)",
                            softmax)],
        "log_softmax": [Adapter("torch.nn.functional.log_softmax",
                                "torch.nn.functional.log_softmax(x, dim=-1)", log_softmax)],
        "logsumexp": [Adapter("torch.logsumexp", "torch.logsumexp(x, dim=-1)", logsumexp)],
        "cross_entropy": [Adapter("torch.nn.functional.cross_entropy",
                                  "torch.nn.functional.cross_entropy(x, target, reduction='none')",
                                  cross_entropy)],
    }
    return table.get(function, [])
