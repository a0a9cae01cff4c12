"""Transform stage: shape DataFrames. Importing this package registers its step types.

``transform.frame``, ``transform.validate`` and ``transform.store``.
"""

from . import frame as frame
from . import store as store
from . import validate as validate
