"""Stage plugins for the engine. Each module registers its step types when imported.

For now: :mod:`steps.core` (``core.value``, ``core.assert``, ``core.shell``).
"""
