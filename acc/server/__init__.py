"""The ACC dashboard: HTTP API, job runner, live event stream and the web page."""

from __future__ import annotations

from acc.server.app import create_app

__all__ = ["create_app"]
