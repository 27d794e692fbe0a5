"""Transports: TCP and TLS (``tcp``, built from a ``ClusterConfig`` by
``TcpTransport.from_config``; member TLS contexts and identity in ``tls``), in-memory for
tests (``memory``), and the interface (``base.Transport``) for users who bring their own."""

from pyraft.transport.base import Deliver, OnMessage, OnUnreachable, Transport

__all__ = ["Deliver", "OnMessage", "OnUnreachable", "Transport"]
