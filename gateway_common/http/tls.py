"""The TLS context of a client towards one origin: the system's trust store or a CA bundle, and an
optional client certificate. Both client implementations get a context built here, so a CA bundle or
certificate means the same thing whichever one carries the traffic."""

from __future__ import annotations

import ssl


def _no_password() -> str:
    raise ValueError("encrypted private keys are not supported; give the key unencrypted")


def client_ssl_context(
    ca_bundle: str | None = None, client_cert: str | None = None, client_key: str | None = None
) -> ssl.SSLContext:
    """A verifying client context (hostname checked, TLS 1.2 or later).

    Without ``ca_bundle`` the system trust store is used (OpenSSL's default paths, which honour
    ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``); with it, only the CAs in that PEM file. ``client_cert``
    is a PEM certificate chain, with its key in the same file or in ``client_key``.
    """
    context = ssl.create_default_context(cafile=ca_bundle)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert is not None:
        context.load_cert_chain(client_cert, client_key, password=_no_password)
    return context
