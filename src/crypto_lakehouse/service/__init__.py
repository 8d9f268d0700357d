"""The HTTP query service: ``lakehouse api`` (docs/service.md).

:func:`create_app` builds the FastAPI app over a root's settings; :func:`serve` runs it on
uvicorn; :mod:`.keys` manages API keys and roles; :mod:`.sandbox` is what SQL from the network
may do; :mod:`.audit` is the trail of requests. The package reads through
:class:`crypto_lakehouse.query.Lakehouse` and writes only ``meta.api_keys``, ``meta.audit`` and
tags (through :mod:`crypto_lakehouse.jobs`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crypto_lakehouse.config import Settings

__all__ = ["create_app", "serve"]


def create_app(settings: Settings, *, audit: bool = True) -> object:
    """See :func:`crypto_lakehouse.service.app.create_app` (imported on first use: FastAPI is heavy)."""
    from crypto_lakehouse.service.app import create_app as build

    return build(settings, audit=audit)


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """Run the service on uvicorn until interrupted: ``api.host``/``api.port`` (or ``host``,
    ``port``), HTTPS when ``api.tls_cert`` and ``api.tls_key`` are set."""
    import uvicorn

    from crypto_lakehouse.errors import ConfigError
    from crypto_lakehouse.service.app import create_app as build

    api = settings.api
    if (api.tls_cert is None) != (api.tls_key is None):
        raise ConfigError("api.tls_cert and api.tls_key go together: give both (HTTPS) or neither (HTTP)")
    uvicorn.run(
        build(settings),
        host=host or api.host,
        port=api.port if port is None else port,
        ssl_certfile=api.tls_cert,
        ssl_keyfile=api.tls_key.get_secret_value() if api.tls_key is not None else None,
        log_level="info",
        access_log=True,  # method, path and status: no query string holds a key or SQL (both go in headers/body)
    )
