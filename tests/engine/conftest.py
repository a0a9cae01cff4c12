"""tests/engine: the built-in core.* steps are registered for every test here (the CLI loads them
through the ``engine.steps`` entry point; in-process tests import them)."""

import steps.core  # noqa: F401
