"""The RESP request parser and reply framer, fed raw bytes (no sockets), over the compiled and the pure twin."""

from __future__ import annotations

import pytest

from tests.conftest import load_twin, twin_params


@pytest.fixture(params=twin_params("resp"))
def resp(request):
    return load_twin("resp", request.param)


PIPELINE = (
    b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"
    b"PING\r\n"
    b"set a \"b c\" 'd\\'e'\r\n"
    b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n"
    b"*1\r\n$4\r\nPING\r\n"
)
EXPECTED = [
    ([b"SET", b"key", b"value"], b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"),
    ([b"PING"], b"*1\r\n$4\r\nPING\r\n"),
    ([b"set", b"a", b"b c", b"d'e"], b"*4\r\n$3\r\nset\r\n$1\r\na\r\n$3\r\nb c\r\n$3\r\nd'e\r\n"),
    ([b"GET", b"a"], b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n"),
    ([b"PING"], b"*1\r\n$4\r\nPING\r\n"),
]


def test_pipeline_in_one_read(resp):
    parser = resp.RequestParser()
    assert parser.feed(PIPELINE) == EXPECTED
    assert parser.error is None and parser.pending() == 0


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 16])
def test_pipeline_split_at_every_boundary(resp, chunk):
    parser = resp.RequestParser()
    got = []
    for i in range(0, len(PIPELINE), chunk):
        got += parser.feed(PIPELINE[i:i + chunk])
    assert [args for args, _ in got] == [args for args, _ in EXPECTED]
    # raw bytes are always a valid RESP encoding of the args, exact when the command arrived whole
    for (_args, raw), (_, want) in zip(got, EXPECTED, strict=True):
        assert raw == want
    assert parser.error is None


def test_binary_safe_values_and_empty_arrays(resp):
    value = bytes(range(256)) * 4 + b"\r\n*$"
    data = b"*0\r\n*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(value), value)
    assert resp.RequestParser().feed(data) == [([b"GET", value], data[4:])]


def test_deep_pipeline(resp):
    one = b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n"
    assert len(resp.RequestParser().feed(one * 10000)) == 10000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"*2\r\nx\r\n", "expected '$', got 'x'"),
        (b"*abc\r\n", "invalid multibulk length"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"*1\r\n$3\r\nabcXY", "bulk string not terminated by CRLF"),
        (b"set a \"unterminated\r\n", "unbalanced quotes in request"),
    ],
)
def test_protocol_errors_are_named(resp, data, message):
    parser = resp.RequestParser()
    assert parser.feed(data) == []
    assert parser.error == message
    assert parser.feed(b"*1\r\n$4\r\nPING\r\n") == []  # a broken stream stays broken


def test_commands_before_garbage_are_kept(resp):
    parser = resp.RequestParser()
    got = parser.feed(b"*1\r\n$4\r\nPING\r\n*1\r\n?\r\n")
    assert got == [([b"PING"], b"*1\r\n$4\r\nPING\r\n")]
    assert parser.error is not None


def test_limits(resp):
    parser = resp.RequestParser(max_bulk=10)
    parser.feed(b"*1\r\n$11\r\n")
    assert parser.error == "invalid bulk length"
    parser = resp.RequestParser(max_inline=16)
    parser.feed(b"x" * 17)
    assert parser.error == "too big inline request"


REPLIES = [
    b"+OK\r\n", b"-ERR bad\r\n", b":42\r\n", b"$5\r\nhello\r\n", b"$-1\r\n", b"*-1\r\n", b"*0\r\n",
    b"*2\r\n*1\r\n:1\r\n$-1\r\n", b"%1\r\n+a\r\n:2\r\n", b"~2\r\n+x\r\n+y\r\n", b"_\r\n", b",3.14\r\n", b"#t\r\n",
    b"(123456789012345678901234567890\r\n", b"=15\r\ntxt:Some string\r\n", b"!5\r\nERROR\r\n",
    b">2\r\n+message\r\n+x\r\n", b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",
]


def test_replies_framed_exactly(resp):
    stream = b"".join(REPLIES)
    assert resp.ReplyScanner().feed(stream) == REPLIES


def test_replies_resumable_byte_by_byte(resp):
    stream = b"".join(REPLIES)
    scanner = resp.ReplyScanner()
    got = []
    for i in range(len(stream)):
        got += scanner.feed(stream[i:i + 1])
    assert got == REPLIES and scanner.pending() == 0
    assert scanner.errors == 2  # "-ERR bad" and RESP3 "!5 ERROR", however the bytes arrived
    assert scanner.pushes == 1  # ">2 message x"


def test_error_replies_counted_at_top_level_only(resp):
    scanner = resp.ReplyScanner()
    scanner.feed(b"-ERR a\r\n*2\r\n-ERR nested\r\n:1\r\n+OK\r\n-WRONGTYPE b\r\n")
    assert scanner.errors == 2  # an error inside an array (EXEC, MGET merge) is part of a reply, not a failure


def test_big_array_in_many_reads(resp):
    items = b"".join(b"$6\r\nvalue%d\r\n" % (i % 10) for i in range(20000))
    reply = b"*20000\r\n" + items
    scanner = resp.ReplyScanner()
    got = []
    for i in range(0, len(reply), 4096):
        got += scanner.feed(reply[i:i + 4096])
    assert got == [reply]


def test_reply_garbage_is_an_error(resp):
    scanner = resp.ReplyScanner()
    assert scanner.feed(b"+OK\r\n?what\r\n") == [b"+OK\r\n"]
    assert scanner.error is not None and "unknown reply type" in scanner.error


def test_twins_agree_on_encoding(resp):
    assert resp.encode_command([b"SET", b"k", b""]) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
