"""Callables that misbehave, for tests/test_hostile.py (they must only ever harm themselves)."""

import ctypes
import os
import sys
import time

import numpy as np


def good(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def writer(x):
    x[...] = 0
    return good(x)


def sneaky(x):
    x.setflags(write=True)
    x[...] = 0
    return good(x)


def good_ce(x, target):
    m = x.max(axis=-1, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(x - m).sum(axis=-1))
    return lse - np.take_along_axis(x, target[:, None], axis=-1)[:, 0]


def target_writer(x, target):
    target.setflags(write=True)
    target[...] = 0
    return good_ce(x, target)


def exit0(x):
    sys.exit(0)


def exit3(x):
    sys.exit(3)


class Boom(BaseException):
    pass


def base(x):
    raise Boom("boom")


def printer(x):
    print("hello from the callable")
    sys.stdout.flush()
    os.write(1, b"raw write\n")
    return good(x)


def segv(x):
    ctypes.string_at(0)


def hang(x):
    time.sleep(1000)


def osexit(x):
    os._exit(5)


def close1(x):
    os.close(1)
    return good(x)
