"""The decision listener's answers as bytes on the wire (gateway.edge.lean_server): fields
encoded once, the request's own fields after them, framing by the server, and never a header
value that would start a line of its own."""

from __future__ import annotations

from gateway.edge.lean_server import Answer, encode_fields, serialize_answer

FIELDS = (("Cache-Control", "no-store"), ("X-User-Id", "alice"), ("X-User-Roles", "user,ops"))


def test_an_answer_is_its_status_line_fields_and_framing() -> None:
    answer = Answer(200, FIELDS, encode_fields(FIELDS))
    answer.headers["X-Request-Id"] = "0123456789abcdef"
    data, keep_alive = serialize_answer(answer, keep_alive=True)
    assert keep_alive
    assert data == (
        b"HTTP/1.1 200 OK\r\n"
        b"Cache-Control: no-store\r\nX-User-Id: alice\r\nX-User-Roles: user,ops\r\n"
        b"X-Request-Id: 0123456789abcdef\r\nContent-Length: 0\r\n\r\n"
    )
    closing, keep_alive = serialize_answer(answer, keep_alive=False)
    assert not keep_alive
    assert closing.endswith(b"Content-Length: 0\r\nConnection: close\r\n\r\n")


def test_the_same_fields_as_aiohttp_response() -> None:
    answer = Answer(200, FIELDS, encode_fields(FIELDS))
    answer.headers.add("Set-Cookie", "a=1")
    response = answer.response()
    assert response.status == 200
    assert list(response.headers.items()) == [*FIELDS, ("Set-Cookie", "a=1")]
    assert response.body is None


def test_a_line_break_in_a_value_is_never_written() -> None:
    for value in ("a\r\nSet-Cookie: x=1", "a\nb", "a\rb"):
        fields = (("X-User-Id", value),)
        assert encode_fields(fields) is None
        data, keep_alive = serialize_answer(Answer(200, fields, None), keep_alive=True)
        assert data.startswith(b"HTTP/1.1 500 ")
        assert b"Set-Cookie" not in data
        assert not keep_alive
        per_request = Answer(200, FIELDS, encode_fields(FIELDS))
        per_request.headers["X-Upstream-Cookie"] = value
        data, keep_alive = serialize_answer(per_request, keep_alive=True)
        assert data.startswith(b"HTTP/1.1 500 ")
        assert not keep_alive
