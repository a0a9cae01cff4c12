"""Send stage: deliver rendered reports (``send.email``, ``send.file``), idempotent and tracked."""
