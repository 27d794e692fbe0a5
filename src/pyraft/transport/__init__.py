"""Transports: TCP and TLS (``tcp``), in-memory for tests (``memory``), and the interface
(``base.Transport``) for users who bring their own."""

from pyraft.transport.base import Deliver, Transport

__all__ = ["Deliver", "Transport"]
