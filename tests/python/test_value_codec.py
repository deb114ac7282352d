"""aicache._aicache._pack / _unpack: the private compact form the Django
backend stores on the memory store (python/src/value_codec.h). Round trips of
every type it takes, None (so the caller pickles) for everything it must not
take, and hostile input: truncated, forged and random bytes raise ValueError,
never crash or read past the end."""

import collections
import math
import pickle
import random
import struct

import pytest

from aicache._aicache import _PACKED_TAG, _pack, _unpack

INT64_MIN = -(2 ** 63)
INT64_MAX = 2 ** 63 - 1

ASCII = "user_123"
LATIN1 = "café ÿ"                       # kind 1, not ASCII
UCS2 = "你好，请帮我查一下订单状态。"        # kind 2
ASTRAL = "emoji 😀 and 𝄞"                # kind 4
SURROGATE = "lone \ud800 surrogate"      # kind 2, not encodable as UTF-8

PLAIN_VALUES = [
    None, True, False, 0, 1, -1, 255, 256, -257, INT64_MIN, INT64_MAX,
    0.0, -0.0, 1.5, -2.25e300, 5e-324, math.inf, -math.inf,
    "", "a", ASCII, LATIN1, UCS2, ASTRAL, SURROGATE, "\x00\x00", "\U0010ffff",
    b"", b"\x00\x80\xff", bytes(range(256)),
    [], (), {}, [[]], ((),), {"": {}},
    [1, "two", 3.0, None, True, b"six", (7,), {"eight": 8}],
    (1, (2, (3, (4,)))),
    {"a": 1, "b": [1, 2], "c": {"d": None}},
    {1: "int key", 2.5: "float key", None: "none", True: "bool", b"k": "bytes",
     (1, "t"): "tuple", "s": "str"},
    {ASTRAL: UCS2, LATIN1: ASCII},
]


def conversation():
    messages = [{"role": "user" if i % 2 == 0 else "assistant",
                 "content": (UCS2 if i % 2 == 0 else "您好！您的订单已发货，预计明天送达。") * 4,
                 "timestamp": 1700000000 + i} for i in range(20)]
    return {"messages": messages, "user_id": "user_123", "channel": "wechat"}


def same(a, b):
    """Equal, of the same exact types all the way down (1 != True, 0.0 is not
    -0.0, NaN is NaN), dict order included."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return (len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
                and all(same(a[k], b[k]) for k in a))
    return a == b


@pytest.mark.parametrize("value", PLAIN_VALUES + [conversation()], ids=repr)
def test_round_trip(value):
    packed = _pack(value)
    assert isinstance(packed, bytes)
    assert packed[:1] == _PACKED_TAG
    back = _unpack(packed)
    assert same(back, value)
    if isinstance(value, (list, dict)):
        assert back is not value  # a fresh copy, as pickle gives


def test_nan_keeps_its_bits():
    nan = struct.unpack("<d", bytes.fromhex("0100000000f8ff7f"))[0]  # a NaN with a payload
    back = _unpack(_pack([nan, math.nan]))
    assert math.isnan(back[0]) and math.isnan(back[1])
    assert struct.pack("<d", back[0]) == struct.pack("<d", nan)


def test_strings_come_back_canonical():
    # Each kind comes back as CPython makes it, so it compares and hashes as
    # the original (a str of the wrong kind would compare unequal).
    for s in (ASCII, LATIN1, UCS2, ASTRAL, SURROGATE):
        back = _unpack(_pack(s))
        assert back == s and hash(back) == hash(s)
        assert {s: 1}[back] == 1


def test_dict_order_and_repeated_keys():
    records = [{"role": "r%d" % i, "content": "c", "ts": i} for i in range(100)]
    back = _unpack(_pack(records))
    assert back == records
    assert [list(r) for r in back] == [["role", "content", "ts"]] * 100
    # Repeated keys are written once: the form is smaller than pickle's.
    assert len(_pack(records)) < len(pickle.dumps(records))


def test_repeated_strings_are_written_once():
    s = UCS2 * 10
    packed = _pack([s, s, {s: s}])
    assert len(packed) < 2 * len(s.encode("utf-16-le"))
    back = _unpack(packed)
    assert back == [s, s, {s: s}]
    assert back[0] is back[1]  # one object, as pickle gives back


def test_many_distinct_strings():
    # More strings than the form can refer to, and than its table of
    # addresses holds: the rest are written in full, each time.
    keys = [f"key{i}" for i in range(5000)]
    value = {k: [k, k, {k: k}] for k in keys}
    assert same(_unpack(_pack(value)), value)
    value = {f"key{i}": {f"key{j}": j for j in range(i % 7)} for i in range(300)}
    assert same(_unpack(_pack(value)), value)


def test_the_first_byte_is_neither_pickle_nor_digits_nor_json():
    first = _PACKED_TAG[0]
    assert first != 0x80                                   # pickle protocol >= 2
    assert chr(first) not in " \t\n\r\x0b\x0c+-0123456789"  # an int as its digits
    assert chr(first) not in '{["tfn'                      # JSON text
    assert first >= 0x80 and first != 0xEF                 # pickle 0/1 opcodes, a UTF-8 BOM
    assert _pack({})[1] == 1                               # the form's version


class MyDict(dict):
    pass


class MyList(list):
    pass


class MyStr(str):
    pass


class MyInt(int):
    pass


class MyFloat(float):
    pass


@pytest.mark.parametrize("value", [
    2 ** 63, -(2 ** 63) - 1, 10 ** 30, [1, 2 ** 64],
    collections.OrderedDict(a=1), collections.defaultdict(list, a=[1]), MyDict(a=1),
    MyList([1]), MyStr("s"), MyInt(3), MyFloat(1.5), {"k": MyStr("s")}, {MyStr("k"): 1},
    {1, 2}, frozenset([1]), bytearray(b"x"), 1j, object, range(3),
    [collections.OrderedDict()],
], ids=repr)
def test_what_it_does_not_keep_exactly_is_left_to_pickle(value):
    assert _pack(value) is None


def test_deep_nesting_is_left_to_pickle():
    value = []
    for _ in range(200):
        value = [value]
    assert _pack(value) is None
    shallow = []
    for _ in range(50):
        shallow = [shallow]
    assert _unpack(_pack(shallow)) == shallow


def test_shared_and_cyclic_containers_are_left_to_pickle():
    shared = {"x": 1}
    value = {"a": shared, "b": shared}
    assert _pack(value) is None
    # Pickle keeps the identity, so the Django backend's fallback does too.
    back = pickle.loads(pickle.dumps(value))
    assert back["a"] is back["b"]

    cyclic = []
    cyclic.append(cyclic)
    assert _pack(cyclic) is None
    d = {}
    d["self"] = d
    assert _pack(d) is None
    t = ([],)
    assert _pack([t, t]) is None
    # Many containers: the set of those met grows past its short list.
    many = [[i] for i in range(1000)]
    assert _unpack(_pack(many)) == many
    assert _pack(many + [many[500]]) is None
    # The empty tuple is one object in CPython; it is not a shared container.
    assert _unpack(_pack([(), ()])) == [(), ()]
    # Equal immutable values met twice are fine.
    s = "shared string" * 3
    assert _unpack(_pack([s, s, b"b", b"b"])) == [s, s, b"b", b"b"]


# --- hostile input -------------------------------------------------------------

def invalid(data):
    with pytest.raises(ValueError, match="invalid packed value"):
        _unpack(data)


def test_every_truncation_is_invalid():
    for value in PLAIN_VALUES + [conversation()]:
        packed = _pack(value)
        for end in range(len(packed)):
            invalid(packed[:end])
        invalid(packed + b"\x00")  # bytes after the value


def test_forged_headers_and_tags():
    invalid(b"")
    invalid(b"\x80\x04N.")               # pickle
    invalid(_PACKED_TAG + b"\x02N")     # an unknown version
    invalid(_PACKED_TAG + b"\x01")      # no value
    invalid(_PACKED_TAG + b"\x01Z")     # an unknown tag
    invalid(_PACKED_TAG + b"\x01r\x00")              # a reference to no str
    invalid(_PACKED_TAG + b"\x01l\x02a\x01xr\x01")    # to one not written yet
    pair = _unpack(_PACKED_TAG + b"\x01l\x02a\x01xr\x00")
    assert pair == ["x", "x"] and pair[0] is pair[1]
    invalid(_PACKED_TAG + b"\x01u\x01\x01a\x00")      # padding not zero
    invalid(_PACKED_TAG + b"\x01U\x01" + b"\x00\x00\x00" + b"\x00\x00\x11\x00")  # > U+10FFFF
    invalid(_PACKED_TAG + b"\x01i" + b"\xff" * 9 + b"\x02")  # a varint beyond 64 bits
    invalid(_PACKED_TAG + b"\x01i" + b"\xff" * 20)     # a varint that never ends
    assert _unpack(_PACKED_TAG + b"\x01i" + b"\xff" * 9 + b"\x01") == INT64_MIN


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@pytest.mark.parametrize("tag", [b"a", b"u", b"U", b"b", b"l", b"t", b"d"])
def test_forged_counts_allocate_nothing(tag):
    for count in (1, 2 ** 31, 2 ** 32 - 1, 2 ** 64 - 1):
        invalid(_PACKED_TAG + b"\x01" + tag + varint(count) + b"\x00\x00\x00")


def test_forged_nesting_is_limited():
    deep = _PACKED_TAG + b"\x01" + b"l\x01" * 10000 + b"N"
    with pytest.raises(ValueError, match="nested too deep"):
        _unpack(deep)


def test_unhashable_forged_key_raises_typeerror():
    with pytest.raises(TypeError):
        _unpack(_PACKED_TAG + b"\x01d\x01l\x00N")


def test_random_mutations_never_crash():
    rng = random.Random(13)
    seeds = [_pack(v) for v in PLAIN_VALUES + [conversation()]]
    for _ in range(20000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            if len(data) > 2:
                data[rng.randrange(2, len(data))] = rng.randrange(256)
        try:
            _unpack(bytes(data))
        except (ValueError, TypeError):
            pass
    for _ in range(5000):
        data = _PACKED_TAG + b"\x01" + bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        try:
            _unpack(data)
        except (ValueError, TypeError):
            pass


def test_unpack_takes_bytes_only():
    with pytest.raises(TypeError):
        _unpack(bytearray(_pack(1)))
    with pytest.raises(TypeError):
        _unpack("text")


def test_each_value_starts_afresh():
    # The tables of objects met are kept per thread from one value to the
    # next; an address a freed object leaves to a new one must not match.
    for i in range(3000):
        s = f"text {i} " * (i % 5)
        value = [s, s, {s: [s]}] if i % 2 else {"k": s, f"k{i}": [1, s, [s] * 3]}
        assert same(_unpack(_pack(value)), value)
    # A value big enough to grow the tables, then small ones again.
    big = {f"k{i}": [f"v{i}"] for i in range(20000)}
    assert same(_unpack(_pack(big)), big)
    assert _unpack(_pack(["a", "a", ["b"]])) == ["a", "a", ["b"]]


def test_threads_pack_on_their_own():
    import threading
    errors = []

    def work(n):
        try:
            for i in range(500):
                value = {"thread": n, "items": [f"{n}-{i}-{j}" for j in range(i % 40)]}
                assert same(_unpack(_pack(value)), value)
        except AssertionError as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_the_store_packs_only_in_process(redis_server):
    import aicache
    memory = aicache.Store.memory()
    assert memory._set_packed("k", ["x"], None) is True
    assert memory._get_decoded("k", None, None) == ["x"]
    assert memory._set_packed("p", {1, 2}, None) is False  # pickle it
    redis = aicache.Store.redis(redis_server.url)
    with pytest.raises(ValueError, match="only on the memory store"):
        redis._set_packed("k", ["x"], None)
    # On Redis a value starting with the tag is somebody else's bytes.
    redis.set("r", _pack(["x"]), None)
    assert redis._get_decoded("r", None, lambda raw: ("raw", raw)) == ("raw", _pack(["x"]))
