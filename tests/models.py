"""The precision model the older tests pin: they were written for the textbook model (every
operation rounded to the format) and say so explicitly, so that they keep their figures whichever
model ``--compute`` defaults to (float32 is torch's CPU arithmetic for half types; see
tests/test_compute.py and the README's Precision model)."""

IN_FORMAT = ("--compute", "format")
COMMANDS = ("compare", "report", "inspect", "audit")


def in_format(argv) -> list:
    """A command line with ``--compute format`` after a command that takes it."""
    argv = list(argv)
    return [argv[0], *IN_FORMAT, *argv[1:]] if argv and argv[0] in COMMANDS else argv
