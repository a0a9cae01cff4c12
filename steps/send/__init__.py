"""Send stage: deliver rendered reports (``send.email``, ``send.file``), idempotent and tracked.

Importing this package registers its step types. Every delivery is recorded in the
``deliveries`` table (:mod:`.deliveries`), which also makes sending idempotent.
"""

from . import email as email
from . import file as file
