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

    from . import by_groups, cast, labels_like

    def T(a):
        return to_tensor(a, device)

    def labels(target):
        return torch.from_numpy(np.asarray(target, dtype=np.int64)).to(device)

    def softmax(x):
        return to_numpy(F.softmax(T(x), dim=-1))

    def log_softmax(x):
        return to_numpy(F.log_softmax(T(x), dim=-1))

    def logsumexp(x):
        return to_numpy(torch.logsumexp(T(x), dim=-1))

    def cross_entropy(x, target):
        return to_numpy(F.cross_entropy(T(x), labels(target), reduction="none"))

    def smoothed(x, arg):
        def run(rows, t, eps):
            return to_numpy(F.cross_entropy(T(x[rows]), labels(t), reduction="none",
                                            label_smoothing=eps)).astype(np.float64)
        return by_groups(arg, x.shape[0], run)

    def elementwise(f):
        return lambda x: to_numpy(f(T(x)))

    def bce_logits(x, z):
        return to_numpy(F.binary_cross_entropy_with_logits(T(x), T(labels_like(z, x)), reduction="none"))

    def bce_probs(x, z):
        return to_numpy(F.binary_cross_entropy(torch.sigmoid(T(x)), T(labels_like(z, x)), reduction="none"))

    def vjp(f):
        def run(x, v):
            t = T(x).requires_grad_(True)
            (g,) = torch.autograd.grad(f(t, dim=-1), t, grad_outputs=T(cast(v, x.dtype)))
            return to_numpy(g)
        return run

    def ce_grad(x, target):
        t = T(x).requires_grad_(True)
        loss = F.cross_entropy(t, labels(target), reduction="none")
        (g,) = torch.autograd.grad(loss, t, grad_outputs=torch.ones_like(loss))
        return to_numpy(g)

    fn = "torch.nn.functional"
    table = {
        "softmax": [Adapter(f"{fn}.softmax", f"{fn}.softmax(x, dim=-1)", softmax)],
        "log_softmax": [Adapter(f"{fn}.log_softmax", f"{fn}.log_softmax(x, dim=-1)", log_softmax)],
        "logsumexp": [Adapter("torch.logsumexp", "torch.logsumexp(x, dim=-1)", logsumexp)],
        "cross_entropy": [Adapter(f"{fn}.cross_entropy", f"{fn}.cross_entropy(x, target, reduction='none')",
                                  cross_entropy)],
        "smoothed_cross_entropy": [Adapter(
            f"{fn}.cross_entropy(label_smoothing)",
            f"{fn}.cross_entropy(x, target, reduction='none', label_smoothing=epsilon)", smoothed)],
        "sigmoid": [Adapter("torch.sigmoid", "torch.sigmoid(x)", elementwise(torch.sigmoid))],
        "log_sigmoid": [Adapter(f"{fn}.logsigmoid", f"{fn}.logsigmoid(x)", elementwise(F.logsigmoid))],
        "softplus": [Adapter(f"{fn}.softplus", f"{fn}.softplus(x) (beta=1, threshold=20: x itself above 20)",
                             elementwise(F.softplus))],
        "binary_cross_entropy": [
            Adapter(f"{fn}.binary_cross_entropy_with_logits",
                    f"{fn}.binary_cross_entropy_with_logits(x, z, reduction='none')", bce_logits),
            Adapter(f"{fn}.binary_cross_entropy(sigmoid)",
                    f"{fn}.binary_cross_entropy(torch.sigmoid(x), z, reduction='none') (log clamped at -100)",
                    bce_probs),
        ],
        "softmax_backward": [Adapter(f"{fn}.softmax (autograd)",
                                     f"torch.autograd.grad({fn}.softmax(x, dim=-1), x, grad_outputs=v)",
                                     vjp(F.softmax))],
        "log_softmax_backward": [Adapter(
            f"{fn}.log_softmax (autograd)",
            f"torch.autograd.grad({fn}.log_softmax(x, dim=-1), x, grad_outputs=v)", vjp(F.log_softmax))],
        "cross_entropy_backward": [Adapter(
            f"{fn}.cross_entropy (autograd)",
            f"torch.autograd.grad({fn}.cross_entropy(x, target, reduction='none'), x, grad_outputs=1)",
            ce_grad)],
    }
    return table.get(function, [])
