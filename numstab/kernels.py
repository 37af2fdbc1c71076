"""Former home of the softmax family's kernels, kept so existing imports keep working.

The functions are now records in :mod:`numstab.functions` (the kernels in
``numstab/functions/softmax.py``); new code imports from there.
"""

from .functions import FUNCTIONS as _RECORDS
from .functions import REGISTRY, Impl, get_impl  # noqa: F401
from .steps import ACC_MODELS as ACCUMULATE  # noqa: F401
from .steps import acc_sum  # noqa: F401

FUNCTIONS = tuple(_RECORDS)
SCALAR_FUNCTIONS = tuple(name for name, f in _RECORDS.items() if f.per_vector)


def get_function(name: str) -> str:
    from .functions import get

    return get(name).name
