"""Transform stage: shape DataFrames. Importing this package registers its step types.

For now: ``transform.frame``.
"""

from . import frame as frame
