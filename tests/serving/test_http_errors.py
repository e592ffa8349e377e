"""Bad requests over real HTTP: short JSON errors with the right status, no trace, no echo."""

from __future__ import annotations

import json
import socket

import pytest

from tests.serving.server import Reply, Server

pytestmark = pytest.mark.serving

SECRET = "do-not-echo-" * 4


def assert_clean_error(reply: Reply, status: int) -> str:
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    message = str(body.get("message", body.get("error")))
    assert "Traceback" not in reply.body.decode()
    assert SECRET not in reply.body.decode()
    assert len(reply.body) < 1000
    return message


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"instances": [{"mean radius": SECRET}]}, "missing column"),
        ({"dataframe_split": {"columns": ["mean radius"], "data": [[SECRET]]}}, "missing column"),
        ({"inputs": {"mean radius": [SECRET]}}, "missing column"),
    ],
)
def test_invalid_rows_get_400_in_mlflows_error_shape(
    linear_server: Server, payload: object, words: str
) -> None:
    reply = linear_server.post("/invocations", payload)
    assert words in assert_clean_error(reply, 400)
    assert reply.json()["error_code"] == "BAD_REQUEST"


def test_wrong_type_names_the_column(
    linear_server: Server, bc_columns: list[str], bc_rows: list[list[float]]
) -> None:
    row: list[object] = list(bc_rows[0])
    row[3] = SECRET
    payload = {"dataframe_split": {"columns": bc_columns, "data": [row]}}
    message = assert_clean_error(linear_server.post("/invocations", payload), 400)
    assert message == f"column {bc_columns[3]!r}, row 0: expected a number, got a string"


def test_nan_in_a_column_without_missing_values_is_refused(
    linear_server: Server, bc_columns: list[str], bc_rows: list[list[float]]
) -> None:
    text = json.dumps({"instances": [bc_rows[0]]}).replace(str(bc_rows[0][0]), "NaN", 1)
    reply = linear_server.request(
        "POST", "/invocations", text.encode(), {"Content-Type": "application/json"}
    )
    assert "missing value" in assert_clean_error(reply, 400)


def test_too_many_rows_get_400(linear_server: Server, bc_rows: list[list[float]]) -> None:
    reply = linear_server.post("/invocations", {"instances": bc_rows[:1] * 501})
    assert "more than the limit of 500" in assert_clean_error(reply, 400)


def test_malformed_json_gets_400_without_echo(linear_server: Server) -> None:
    body = ('{"instances": [' + SECRET).encode()
    reply = linear_server.request(
        "POST", "/invocations", body, {"Content-Type": "application/json"}
    )
    assert "not valid JSON" in assert_clean_error(reply, 400)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/xml"])
def test_missing_or_wrong_content_type_gets_415(
    linear_server: Server, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    reply = linear_server.request("POST", "/invocations", b'{"instances": [[1]]}', headers)
    assert_clean_error(reply, 415)


def test_wrong_method_gets_405_with_allow(linear_server: Server) -> None:
    reply = linear_server.request("GET", "/invocations")
    assert_clean_error(reply, 405)
    assert reply.headers["allow"] == "POST"


def test_unknown_path_gets_404(linear_server: Server) -> None:
    assert_clean_error(linear_server.get(f"/nowhere/{SECRET}"), 404)


def test_body_over_the_limit_gets_413_from_content_length(linear_server: Server) -> None:
    body = b'{"instances": [' + b"1," * 150_000 + b"1]}"
    reply = linear_server.request(
        "POST", "/invocations", body, {"Content-Type": "application/json"}
    )
    assert "200000 bytes" in assert_clean_error(reply, 413)


def test_body_over_the_limit_gets_413_without_content_length(linear_server: Server) -> None:
    chunks = [b'{"instances": [', *([b"1," * 10_000] * 15), b"1]}"]
    reply = linear_server.request(
        "POST",
        "/invocations",
        iter(chunks),  # type: ignore[arg-type]  # an iterable is sent chunked, no Content-Length
        {"Content-Type": "application/json"},
    )
    assert_clean_error(reply, 413)


def test_a_body_far_over_the_limit_is_refused_before_it_arrives(linear_server: Server) -> None:
    """Declared at over 4x the limit: answered 413 at once, not after waiting for the body
    (which is never sent here); smaller excess bodies are read to their end first."""
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 900000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", linear_server.port), timeout=5) as sock:
        sock.sendall(head)
        answer = sock.recv(65536).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer


def test_content_length_that_lies_is_not_trusted(linear_server: Server) -> None:
    """Declared small, sent large: the server reads only what was declared; the rest is not
    a second request it would serve, and the connection is not left half-read."""
    body = b'{"instances": [' + b"1," * 150_000 + b"1]}"
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 20\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", linear_server.port), timeout=10) as sock:
        sock.sendall(head + body[:20])
        first = sock.recv(65536).decode(errors="replace")
        assert first.startswith("HTTP/1.1 400"), first
        try:
            sock.sendall(body[20:])
            rest = sock.recv(65536)
        except OSError:
            rest = b""
    assert b"200 OK" not in rest


def test_admin_reload_needs_the_admin_token(linear_server: Server) -> None:
    assert_clean_error(linear_server.request("POST", "/admin/reload"), 401)
    wrong = {"Authorization": "Bearer nope"}
    assert_clean_error(linear_server.request("POST", "/admin/reload", headers=wrong), 401)
    right = {"Authorization": "Bearer admin-secret"}
    reply = linear_server.request("POST", "/admin/reload", headers=right)
    assert reply.status == 200
    assert reply.json() == {"reloaded": False, "version": "1", "previous": "", "error": ""}
