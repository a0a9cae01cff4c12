"""``engine server``: the REST API (and later MCP and the web UI) over the service layer.

:mod:`.app` assembles the FastAPI application, :mod:`.auth` turns a bearer token into a caller
and its workspace, :mod:`.errors` translates the engine's errors to problem+json once, and
:mod:`.routes` has one router per resource. No rule lives here: see :mod:`engine.service`.
"""
