"""Worker processes of a parallel run: how many, how they start, how they are stopped."""

from __future__ import annotations

import contextlib
import os


def _stop_signals() -> set:
    import signal

    return {s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None}


@contextlib.contextmanager
def signals_held():
    """Hold INT/TERM/HUP while worker processes are forked: a signal arriving then waits (in
    the parent for its handler, in a new worker until :func:`_worker_init` has set the default
    actions), so a worker never runs the parent's handler and prints a traceback."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _stop_signals())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _worker_init() -> None:
    """In a worker: default signal actions (the parent handles INT/TERM/HUP and stops the
    workers), and die with the parent even if it is killed outright."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):  # held by signals_held() in the parent while forking
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _stop_signals())
    die_with_parent()


#: libc's prctl, resolved in the parent (:func:`prepare_fork`); False where there is none
_PRCTL = None


def prepare_fork() -> None:
    """Resolve, before forking, what a forked child calls (:func:`die_with_parent`): a child of
    a multi-threaded process (a Dask worker, a progress thread) must not import a module or look
    up a symbol itself -- a lock another thread held at the fork (the dynamic loader's, a
    module's import lock) stays held in the child for ever."""
    global _PRCTL
    if _PRCTL is None:
        try:
            import ctypes

            _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            _PRCTL = False


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent exits (best effort elsewhere)."""
    import signal

    prepare_fork()  # nothing left to do where the parent prepared it
    if _PRCTL:
        _PRCTL(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG


def stop_pool(pool) -> None:
    """Terminate a ProcessPoolExecutor's workers now, without waiting for their tasks."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        try:
            p.terminate()
        except (OSError, AttributeError):
            pass
    try:
        pool.shutdown(wait=False, cancel_futures=True)
    except Exception:  # noqa: BLE001 - best effort while stopping
        pass
    for p in procs:
        try:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
        except (OSError, AttributeError, ValueError):
            pass


_TASKS: list = []  # the tasks of the running pool: forked workers inherit them (nothing to pickle)


def _call(fn, i: int):
    return fn(_TASKS[i])


def run_tasks(fn, tasks, jobs: int, on_result, scheduler=None) -> None:
    """fn(task) for every task -- in this process (jobs 1 or one task), in ``jobs`` forked worker
    processes, or on the Dask scheduler at ``scheduler`` -- calling ``on_result(task, result)``
    in this process as each one finishes (in any order). The one parallel engine of inspect,
    audit and shards on a cluster."""
    if scheduler is not None:
        from .dask_run import run_on_dask

        run_on_dask(fn, tasks, scheduler, on_result)
        return
    if jobs <= 1 or len(tasks) <= 1:
        for t in tasks:
            on_result(t, fn(t))
        return
    import concurrent.futures as cf
    import multiprocessing as mp

    global _TASKS
    _TASKS = list(tasks)
    prepare_fork()
    pool = cf.ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=mp.get_context("fork"),
                                  initializer=_worker_init)
    try:
        # a bounded window of tasks in flight: a finished task's result is handed on and dropped at
        # once, so the results of a long run never pile up here
        window, nxt, futs = 2 * min(jobs, len(tasks)), 0, {}
        with signals_held():  # the workers fork at the first submit
            while nxt < len(tasks) and len(futs) < window:
                futs[pool.submit(_call, fn, nxt)] = nxt
                nxt += 1
        while futs:
            done, _ = cf.wait(list(futs), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                i = futs.pop(fut)
                result = fut.result()
                del fut
                on_result(tasks[i], result)
                del result
                if nxt < len(tasks):
                    futs[pool.submit(_call, fn, nxt)] = nxt
                    nxt += 1
            del done
    except BaseException:
        stop_pool(pool)  # a signal or an error: no worker may outlive this run
        raise
    finally:
        _TASKS = []
    pool.shutdown(wait=True)
