"""Local servers the project starts (ads API, S3, Airflow): is a port free, does a URL answer."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request


def answers(url: str, timeout: float = 5, any_status: bool = True) -> bool:
    """True when something answers HTTP at the URL (any status, or only 200 with any_status False)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own local http URL
            return any_status or response.status == 200
    except urllib.error.HTTPError:
        return any_status
    except OSError:
        return False


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        # As the servers bind: a port whose last connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False
