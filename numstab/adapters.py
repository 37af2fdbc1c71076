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
import pickle
import select
import signal
import sys
import threading
import time
import weakref
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


def _call_private(fn, name: str, args: tuple, readonly: bool):
    """fn on private copies of args (read-only unless ``readonly`` is False), a write into them
    found against a second copy: :func:`_call_checked`'s ("ok", y) or ("fail", message)."""
    ins = tuple(_private(a, readonly) for a in args)
    copies = tuple(_private(a, False) if isinstance(a, (np.ndarray, dict)) else None for a in args)
    return _call_checked(fn, name, ins, copies)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _message(data: bytes) -> bytes:
    return len(data).to_bytes(8, "little") + data


def _read_exact(fd: int, n: int, deadline=None):
    """n bytes from fd; None at end of file; TimeoutError past the deadline (time.monotonic)."""
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 22))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_message(fd: int, deadline=None):
    head = _read_exact(fd, 8, deadline)
    if head is None:
        return None
    return _read_exact(fd, int.from_bytes(head, "little"), deadline)


#: the pipe ends every isolated child of this process holds open: a child forked later closes
#: them, or its copy would keep an earlier child from ever reading the end of its requests
_OPEN_ENDS: set = set()


def _serve(fn, name, readonly, r, w) -> None:  # pragma: no cover - runs in the fork
    """The child's loop: a request (the arguments, pickled) in, ("ok", y) or ("fail", message)
    out, until the parent closes the requests' pipe."""
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, signal.SIG_DFL)
    from .workers import die_with_parent

    die_with_parent()
    code = 0
    try:
        for fd in _OPEN_ENDS:
            with contextlib.suppress(OSError):
                os.close(fd)
        os.dup2(2, 1)  # whatever the callable prints goes to stderr
        sys.stdout = sys.stderr
        while True:
            request = _read_message(r)
            if request is None:
                break
            status, payload = _call_private(fn, name, pickle.loads(request), readonly)
            try:
                data = pickle.dumps((status, payload), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # noqa: BLE001 - an unpicklable result is a finding
                data = pickle.dumps(("fail", f"{name} returned an object numstab cannot use "
                                             f"({type(exc).__name__}: {exc})"))
            with contextlib.suppress(BaseException):
                sys.stderr.flush()
            _write_all(w, _message(data))
    except BaseException:  # noqa: BLE001 - never run the parent's code in the child
        code = 70
    finally:
        try:
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        os._exit(code)


class _Child:
    """One forked child that runs an isolated function call after call. What a library sets up
    on its first call -- a CUDA context, compiled kernels -- is set up once per process, not once
    per call: a fork per call cost 0.4 s for torch on a GPU and over 2 s for jax, whatever the
    input. A call that crashes, exits or hangs ends the child; the next call forks a new one."""

    def __init__(self, fn, name: str, readonly: bool):
        from .workers import prepare_fork

        prepare_fork()
        r1, w1 = os.pipe()  # requests
        r2, w2 = os.pipe()  # replies
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(w1)
            os.close(r2)
            _serve(fn, name, readonly, r1, w2)
        os.close(r1)
        os.close(w2)
        self.pid, self.owner, self.req, self.rep, self.name = pid, os.getpid(), w1, r2, name
        _OPEN_ENDS.update((w1, r2))

    def alive(self) -> bool:
        """Still running and this process's own (a child forked before this process was -- a
        worker's inherited copy -- is not; nor is one that ended, e.g. with the thread that forked
        it)."""
        if self.owner != os.getpid() or self.pid is None:
            return False
        try:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            done = self.pid
        if done:
            self.pid = None
            self.close()
        return not done

    def call(self, args: tuple, timeout):
        """fn(*args) in the child: ("ok", y) or ("fail", message); a failure ends the child."""
        deadline = time.monotonic() + timeout if timeout else None
        reply, outcome = None, None
        try:
            _write_all(self.req, _message(pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)))
            reply = _read_message(self.rep, deadline)
        except TimeoutError:
            outcome = ("fail", f"{self.name} did not return within {timeout:g} s (--timeout)")
        except BrokenPipeError:
            pass  # the child ended while reading the request: its status says how
        finally:
            if reply is None:
                status = self.stop(kill=outcome is not None or sys.exc_info()[0] is not None)
        if reply is not None:
            return pickle.loads(reply)
        if outcome is not None:
            return outcome
        if os.WIFSIGNALED(status):
            return "fail", f"{self.name} crashed ({_signal_name(os.WTERMSIG(status))}) in its child process"
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
        return "fail", f"{self.name} ended the process (exit status {code}) without returning"

    def close(self) -> None:
        """Close the owner's ends. Only the owner: in a process forked from it (a worker, or
        another isolated child, which closed them at its start) the same numbers may since name
        other files -- a collected copy closing them there broke a child's own pipe under load."""
        if self.owner != os.getpid():
            return
        for fd in (self.req, self.rep):
            if fd is not None:
                _OPEN_ENDS.discard(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.req = self.rep = None

    def stop(self, kill: bool = True) -> int:
        """End the child (killed, or left to end by itself) and reap it: its wait status."""
        pid, self.pid = self.pid, None
        self.close()
        if pid is None or self.owner != os.getpid():
            return 0
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return 0


class _Children:
    """The idle children of one isolated function, per process: a call takes one (or forks a
    new one) and gives it back when it returned well, so threads that call at once (Dask's
    in-process workers) each have their own."""

    def __init__(self, fn, name: str, readonly: bool):
        self.fn, self.name, self.readonly = fn, name, readonly
        self.lock, self.idle = threading.Lock(), []
        weakref.finalize(self, _stop_all, self.idle)

    def call(self, args: tuple, timeout):
        child = None
        with self.lock:
            while self.idle and child is None:
                c = self.idle.pop()
                child = c if c.alive() else None
        if child is None:
            child = _Child(self.fn, self.name, self.readonly)
        status, payload = child.call(args, timeout)
        if child.pid is not None:
            with self.lock:
                self.idle.append(child)
        return status, payload


def _stop_all(idle: list) -> None:
    """The children of a function no longer used (or at exit): ended, so none lingers."""
    while idle:
        idle.pop().stop()


def isolate(fn, name: str, timeout=None, readonly: bool = True):
    """fn wrapped so it cannot harm the run: it gets private, read-only copies of its inputs
    (a write is a finding), runs in a forked child process where the platform has fork (a
    crash, os._exit or a hang beyond ``timeout`` seconds is a finding naming it), and its
    prints go to stderr. Returns a function raising CallableError on any misbehaviour.
    ``readonly=False`` (libraries that refuse read-only arrays) passes writable private copies:
    a write is then found by comparing them afterwards."""
    use_fork = hasattr(os, "fork") and os.environ.get("NUMSTAB_NO_FORK") != "1"
    children = _Children(fn, name, readonly) if use_fork else None

    def call(*args):
        if use_fork:
            status, payload = children.call(args, timeout)
        else:
            status, payload = _call_private(fn, name, args, readonly)
        if status != "ok":
            raise _fail(payload)
        return payload

    return call


def user_impl(function: str, fn, name: str, timeout=None) -> Impl:
    safe = isolate(fn, name, timeout)
    if get_function(function).takes:
        return Impl(function, name, lambda x, acc, target: safe(x, target), f"user callable {name}")
    return Impl(function, name, lambda x, acc: safe(x), f"user callable {name}")
