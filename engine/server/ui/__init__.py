"""The web UI of ``engine server`` at ``/``: server-rendered Jinja2 pages, htmx (vendored in
``static/``) for partial updates, server-sent events for live runs. Every page and form calls
the same :mod:`engine.service` actions as the REST API; the session is an HttpOnly,
SameSite=Strict cookie holding no token (only a random id), and every form carries a CSRF token."""
