"""Structured fields for uvicorn's access log records, so each JSON line has client, method, path, status."""

from __future__ import annotations

import logging

ACCESS_LOGGER = "uvicorn.access"


class AccessLogFields(logging.Filter):
    """uvicorn logs `'%s - "%s %s HTTP/%s" %d'` with these args; expose them as fields too."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            client, method, path, http_version, status = args
            record.client = client
            record.method = method
            record.path = path
            record.http_version = http_version
            record.status = status
        return True


def install_access_log_fields() -> None:
    access = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(item, AccessLogFields) for item in access.filters):
        access.addFilter(AccessLogFields())
