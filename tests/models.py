"""Pinning the textbook precision model in a test that is about it.

The default precision model (``--compute float32``) runs a float16/bfloat16 kernel in float32
and rounds only its output, as torch and jax users see it; tests about what goes wrong when
every operation is rounded to the format (exp(12) overflowing float16, a float16 sum absorbing
its small terms) say so at the call, with ``in_format(argv)`` or ``--compute format``
(tests/test_compute.py checks the models themselves and which library follows which)."""

IN_FORMAT = ("--compute", "format")
COMMANDS = ("compare", "report", "inspect", "audit")


def in_format(argv) -> list:
    """A command line with ``--compute format`` after a command that takes it."""
    argv = list(argv)
    return [argv[0], *IN_FORMAT, *argv[1:]] if argv and argv[0] in COMMANDS else argv
