"""Server settings and the listening socket, without starting a server."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mlops.config import load_config
from mlops.errors import ConfigError
from mlops.serving.server import bind
from mlops.serving.settings import server_settings

pytestmark = pytest.mark.serving

CONFIG = load_config(Path(__file__).resolve().parents[2] / "configs" / "default.yaml")


def test_flags_beat_environment_beat_config() -> None:
    environ = {"HOST": "0.0.0.0", "PORT": "9001", "MODEL_URI": "models:/env-model/4"}
    from_env = server_settings(CONFIG, environ)
    assert (from_env.host, from_env.port, from_env.source.uri) == (
        "0.0.0.0",
        9001,
        "models:/env-model/4",
    )
    from_flags = server_settings(CONFIG, environ, "127.0.0.1", 9002, "models:/flag-model@blue")
    assert (from_flags.host, from_flags.port) == ("127.0.0.1", 9002)
    assert (from_flags.source.name, from_flags.source.alias) == ("flag-model", "blue")
    default = server_settings(CONFIG, {})
    assert default.source.uri == f"models:/{CONFIG.registered_model}@champion"
    assert (default.host, default.port) == ("127.0.0.1", 8080)


def test_tokens_come_from_the_environment_and_stay_out_of_repr() -> None:
    settings = server_settings(
        CONFIG, {"MLOPS_API_TOKEN": "p-secret", "MLOPS_ADMIN_TOKEN": "a-secret"}
    )
    assert (settings.api_token, settings.admin_token) == ("p-secret", "a-secret")
    assert "secret" not in repr(settings)


def test_a_bad_port_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="PORT must be an integer"):
        server_settings(CONFIG, {"PORT": "eighty"})


def test_the_listening_socket_is_tcp_with_nodelay() -> None:
    """asyncio disables Nagle only on sockets whose proto is IPPROTO_TCP (see server.py)."""
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()


def test_a_port_in_use_is_a_config_error() -> None:
    taken = bind("127.0.0.1", 0)
    taken.listen()
    try:
        with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
