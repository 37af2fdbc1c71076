"""numstab: numerical-stability analysis of the softmax family."""

__version__ = "0.1.0"
