"""Transform stage: shape DataFrames. Importing this package registers its step types.

For now: ``transform.frame`` and ``transform.validate``.
"""

from . import frame as frame
from . import validate as validate
