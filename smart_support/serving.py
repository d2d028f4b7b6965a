"""The gunicorn worker that `gunicorn.conf.py` runs: gunicorn's sync worker, minus two costs that
a one-request-per-connection server pays on every request (README, "Performance").

1. Headers and body leave as one TCP segment. gunicorn writes the status line and headers,
   then the body, in two writes; with TCP_CORK set the kernel holds both until the
   connection is shut down, so they leave together with the FIN.
2. The worker does not wait for the client to hang up. gunicorn 27 half-closes and then
   blocks in recv() until the client's FIN arrives (RFC 9112 section 9.6), so that unread
   request bytes never turn the close into a reset that could cut the response short. When
   nothing is left unread, which is the case after every request our views answer, there is
   nothing to protect: the worker shuts the socket down at once and takes the next
   connection. When bytes are still unread, gunicorn's draining close runs as before.
"""
from __future__ import annotations

import socket

from gunicorn.workers.sync import SyncWorker as GunicornSyncWorker

TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class SyncWorker(GunicornSyncWorker):
    def handle_request(self, listener, req, client, addr):
        corked = cork(client)
        try:
            super().handle_request(listener, req, client, addr)
        finally:
            if corked:
                close_if_drained(client)


def cork(client: socket.socket) -> bool:
    """Hold partial segments until shutdown; False where TCP_CORK does not apply."""
    if client.family not in TCP_FAMILIES or not hasattr(socket, "TCP_CORK"):
        return False
    try:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    except OSError:
        return False
    return True


def close_if_drained(client: socket.socket) -> None:
    """Shut both directions now if the client has sent nothing unread; then gunicorn's own
    close finds the read side closed and returns at once. Otherwise leave the socket to it."""
    try:
        pending = client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        pending = b""
    except OSError:
        return
    if pending:
        return
    try:
        client.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
