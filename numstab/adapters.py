"""Implementations from outside numstab: user callables and well-known libraries.

A user callable takes a numpy array of the target dtype with the vectors along
the last axis (shape (batch, n)) -- and ``target`` (batch,) for cross_entropy --
and returns an array of the same dtype: (batch, n) for softmax/log_softmax,
(batch,) for logsumexp/cross_entropy. Returning another shape or dtype, or
raising, is a finding, not a crash.

Library adapters (``--library``) live in ``numstab.libraries``, one module per
library; they run through the same isolation (:func:`isolate`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading
from pathlib import Path

import numpy as np

from .errors import Terminated, UsageError
from .functions import Impl
from .functions import get as get_function

#: one redirection for all the threads inside stdout_to_stderr blocks (Dask's in-process workers
#: call black boxes from several threads at once: each saving and restoring sys.stdout by itself
#: could restore another block's redirection and leave numstab's own output on stderr)
_REDIRECT = {"lock": threading.Lock(), "depth": 0, "fd": None, "saved": None, "stdout": None}


def _redirect_after_fork() -> None:
    """In a forked child: a fresh, unheld redirect state. Another thread of the parent (a Dask
    worker's, running a callable of its own) may have held the lock at the fork, and no thread
    of the child will ever release it: the child's own redirect blocked for ever."""
    _REDIRECT.update(lock=threading.Lock(), depth=0, fd=None, saved=None, stdout=None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_redirect_after_fork)


@contextlib.contextmanager
def stdout_to_stderr():
    """Everything written to stdout inside the block goes to stderr instead, at the
    file-descriptor level too (C extensions, os.write(1, ...)): numstab's own output stays clean.
    Thread-safe and reentrant: the first block in redirects, the last one out restores."""
    st = _REDIRECT
    with st["lock"]:
        if st["depth"] == 0:
            sys.stdout.flush()
            st["saved"] = st["fd"] = None
            try:
                fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else 1
                st["saved"] = os.dup(fd)
                os.dup2(2, fd)
                st["fd"] = fd
            except (OSError, ValueError, AttributeError):
                pass
            st["stdout"] = sys.stdout
            sys.stdout = sys.stderr
        st["depth"] += 1
    try:
        yield
    finally:
        with st["lock"]:
            st["depth"] -= 1
            if st["depth"] == 0:
                try:
                    sys.stderr.flush()
                except (OSError, ValueError):
                    pass
                sys.stdout = st["stdout"]
                if st["saved"] is not None:
                    os.dup2(st["saved"], st["fd"])
                    os.close(st["saved"])
                st["saved"] = st["fd"] = st["stdout"] = None


def load_callable(spec: str):
    """'package.module:function' or 'path/to/file.py:function' -> the function.

    Importing runs the module's code, as any Python import does. Anything it raises --
    SystemExit included -- is a one-line usage error; what it prints goes to stderr.
    """
    if ":" not in spec:
        raise UsageError(f"--callable {spec!r}: use module:function or path/to/file.py:function")
    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise UsageError(f"--callable {spec!r}: use module:function or path/to/file.py:function")
    try:
        with stdout_to_stderr():
            if mod_name.endswith(".py") or "/" in mod_name:
                path = Path(mod_name)
                if not path.is_file():
                    raise UsageError(f"--callable {spec!r}: no such file {path}")
                name = f"numstab_user_{abs(hash(str(path.resolve())))}"
                s = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(s)
                sys.modules[name] = module
                s.loader.exec_module(module)
            else:
                if "" not in sys.path and "." not in sys.path:
                    sys.path.insert(0, "")
                module = importlib.import_module(mod_name)
    except UsageError:
        raise
    except (KeyboardInterrupt, Terminated):
        raise
    except SystemExit as exc:
        raise UsageError(f"--callable {spec!r}: cannot import: the module called sys.exit({exc.code!r})") \
            from None
    except BaseException as exc:  # the user's module failed to import: say why in one line
        raise UsageError(f"--callable {spec!r}: cannot import: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise UsageError(f"--callable {spec!r}: {mod_name} has no attribute {attr!r}")
    if not callable(fn):
        raise UsageError(f"--callable {spec!r}: {attr!r} is not callable")
    return fn


# ------------------------------------------------------- isolation
def _fail(msg: str):
    from .errors import CallableError

    return CallableError(msg)


def _describe_base(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    return f"raised {type(exc).__name__}: {exc}"


def _frozen(a):
    """A private read-only copy: writes raise, and nothing reaches the caller's array."""
    if a is None:
        return None
    c = np.array(a, copy=True)
    c.setflags(write=False)
    return c


def _private(a, readonly: bool):
    """A private copy of an argument: arrays (read-only unless ``readonly`` is False), and the
    arrays inside a dict (an extra argument made of several, e.g. target and epsilon)."""
    if isinstance(a, np.ndarray):
        return _frozen(a) if readonly else np.array(a, copy=True)
    if isinstance(a, dict):
        return {k: _private(v, readonly) for k, v in a.items()}
    return a


def _same(a, c) -> bool:
    """a still equals its copy c (NaN equal to NaN; structured arrays compared bit for bit)."""
    if isinstance(a, dict):
        return isinstance(c, dict) and a.keys() == c.keys() and all(_same(a[k], c[k]) for k in a)
    if isinstance(a, np.ndarray):
        if a.dtype.kind in "fc":
            return np.array_equal(a, c, equal_nan=True)
        return a.shape == c.shape and a.dtype == c.dtype and a.tobytes() == c.tobytes()
    return True


def _call_checked(fn, name: str, args: tuple, copies: tuple):
    """fn(*args) with its inputs guarded: returns ("ok", y) or ("fail", message)."""
    try:
        with stdout_to_stderr():
            y = fn(*args)
        y = np.asarray(y)
    except (KeyboardInterrupt, Terminated):
        raise
    except ValueError as exc:
        if "read-only" in str(exc):
            return "fail", f"{name} tried to write into its input array ({type(exc).__name__}: {exc})"
        return "fail", f"{name} raised {type(exc).__name__}: {exc}"
    except BaseException as exc:  # SystemExit, GeneratorExit, user BaseExceptions: a finding
        return "fail", f"{name} {_describe_base(exc)}"
    for what, a, c in zip(("input array", "second argument (target, labels or cotangent)"), args, copies):
        if a is not None and c is not None and not _same(a, c):
            return "fail", f"{name} wrote into its {what} (it must not change its inputs)"
    return "ok", y


def _signal_name(sig: int) -> str:
    import signal

    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _child_main(fn, name, args, copies, w) -> None:  # pragma: no cover - runs in the fork
    import pickle
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, signal.SIG_DFL)
    from .workers import die_with_parent

    die_with_parent()
    code = 0
    try:
        os.dup2(2, 1)  # whatever the callable prints goes to stderr
        sys.stdout = sys.stderr
        status, payload = _call_checked(fn, name, args, copies)
        try:
            data = pickle.dumps((status, payload), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - an unpicklable result is a finding
            data = pickle.dumps(("fail", f"{name} returned an object numstab cannot use "
                                         f"({type(exc).__name__}: {exc})"))
        view = memoryview(data)
        while view:
            view = view[os.write(w, view):]
    except BaseException:  # noqa: BLE001 - never run the parent's code in the child
        code = 70
    finally:
        try:
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        os._exit(code)


def _run_in_child(fn, name: str, args: tuple, copies: tuple, timeout):
    """fn(*args) in a forked child: a crash, hang, exit or write stays there."""
    import pickle
    import select
    import signal
    import time

    from .workers import prepare_fork

    prepare_fork()
    r, w = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        _child_main(fn, name, args, copies, w)
    os.close(w)
    chunks, deadline, timed_out = [], (time.monotonic() + timeout if timeout else None), False
    try:
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([r], [], [], wait)
            if not ready:
                timed_out = True
                break
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        if timed_out or sys.exc_info()[0] is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return "fail", f"{name} did not return within {timeout:g} s (--timeout)"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return "fail", f"{name} crashed ({_signal_name(sig)}) in its child process"
    data = b"".join(chunks)
    if not data:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
        return "fail", f"{name} ended the process (exit status {code}) without returning"
    return pickle.loads(data)


def isolate(fn, name: str, timeout=None, readonly: bool = True):
    """fn wrapped so it cannot harm the run: it gets private, read-only copies of its inputs
    (a write is a finding), runs in a forked child process where the platform has fork (a
    crash, os._exit or a hang beyond ``timeout`` seconds is a finding naming it), and its
    prints go to stderr. Returns a function raising CallableError on any misbehaviour.
    ``readonly=False`` (libraries that refuse read-only arrays) passes writable private copies:
    a write is then found by comparing them afterwards."""
    use_fork = hasattr(os, "fork") and os.environ.get("NUMSTAB_NO_FORK") != "1"

    def call(*args):
        ins = tuple(_private(a, readonly) for a in args)
        copies = tuple(_private(a, False) if isinstance(a, (np.ndarray, dict)) else None for a in args)
        if use_fork:
            status, payload = _run_in_child(fn, name, ins, copies, timeout)
        else:
            status, payload = _call_checked(fn, name, ins, copies)
        if status != "ok":
            raise _fail(payload)
        return payload

    return call


def user_impl(function: str, fn, name: str, timeout=None) -> Impl:
    safe = isolate(fn, name, timeout)
    if get_function(function).takes:
        return Impl(function, name, lambda x, acc, target: safe(x, target), f"user callable {name}")
    return Impl(function, name, lambda x, acc: safe(x), f"user callable {name}")
