"""The web interface served by ``hpcsnap serve`` next to the API, on the same port.

Server-rendered pages (Jinja2 templates in ``templates/``, autoescaped) and a small hand-written
script and style sheet in ``static/``; no build step and nothing fetched from elsewhere. Users
sign in with an API token; the session is a signed cookie, every form and every script call that
changes something carries a CSRF token, and every page applies the API's ownership rules (another
user's task is answered exactly like a missing one).

Pages: the task list (``/``), the submission form (``/tasks/new``), a task (``/tasks/{uuid}``)
and the snapshot browser (``/tasks/{uuid}/snapshots/{id}``). The pages' scripts use small JSON
endpoints under ``/ui/api`` authenticated by the session cookie plus the CSRF header; the public
JSON API stays under ``/v1``. :func:`install` adds all of it to the server's application.
"""

from hpcsnap.web.site import install

__all__ = ["install"]
