"""The web dashboard (``pip install 'conveyor-tasks[dashboard]'``): ``conveyor dashboard
pkg.tasks:app``, or mount :func:`create_dashboard` in FastAPI. docs/dashboard.md.

Modules: app.py (``create_dashboard``, routes, rendering), auth.py (tokens, basic auth,
cookies, CSRF), pages.py (the GET pages), actions.py (the POST actions), activity.py (task
rows and per-minute outcomes from the event log), charts.py (SVG geometry), templates/
(Jinja2, autoescaped) and static/ (CSS and the live-refresh script; no CDN).
"""

from conveyor.dashboard.app import Dashboard as Dashboard
from conveyor.dashboard.app import create_dashboard as create_dashboard

__all__ = ["Dashboard", "create_dashboard"]
