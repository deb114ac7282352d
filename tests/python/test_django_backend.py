"""aicache.django.AicacheCache through Django's cache API (the test project in
django_project/), on the memory store and on Redis, with both serializers;
and sharing entries with django-redis in both directions."""

import datetime
import decimal
import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session")
def django_caches(redis_server):
    os.environ["AICACHE_TEST_REDIS_URL"] = redis_server.url
    os.environ["DJANGO_SETTINGS_MODULE"] = "django_project.settings"
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import django
    django.setup()
    from django.core.cache import caches
    return caches


@pytest.fixture
def caches(django_caches, redis_server):
    redis_server.client().flushall()
    # The Redis aliases' near caches hear of that FLUSHALL through Redis's
    # invalidation, tens of microseconds later (docs/near_cache.md); their own
    # clear() empties them at once, so no test starts by reading a value
    # the previous one left.
    for alias in ("default", "memory_json", "aicache_pickle", "aicache_json", "aicache_keyfunc"):
        django_caches[alias].clear()
    return django_caches


OURS = ["default", "memory_json", "aicache_pickle", "aicache_json"]


@pytest.fixture(params=OURS)
def cache(request, caches):
    return caches[request.param]


def is_json(cache):
    return type(cache._serializer).__name__ == "_JsonSerializer"


def test_the_backend_is_aicaches(cache):
    from aicache.django import AicacheCache
    assert isinstance(cache, AicacheCache)


def test_get_set_delete(cache):
    assert cache.get("k") is None
    assert cache.get("k", "default") == "default"
    cache.set("k", {"a": [1, 2, "three"], "b": None})
    assert cache.get("k") == {"a": [1, 2, "three"], "b": None}
    assert cache.has_key("k")
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert not cache.has_key("k")


def test_add(cache):
    assert cache.add("k", 1) is True
    assert cache.add("k", 2) is False
    assert cache.get("k") == 1
    # A timeout of 0 stores nothing, and answers whether the key was absent
    # (django-redis's answer).
    assert cache.add("k", 3, timeout=0) is False
    assert cache.add("absent", 3, timeout=0) is True
    assert cache.get("absent") is None


def test_many(cache):
    cache.set_many({"a": 1, "b": "two", "c": [3]})
    assert cache.get_many(["a", "b", "c", "missing"]) == {"a": 1, "b": "two", "c": [3]}
    cache.delete_many(["a", "b"])
    assert cache.get_many(["a", "b", "c"]) == {"c": [3]}
    assert cache.get_many([]) == {}


def test_incr_decr(cache):
    cache.set("n", 10)
    assert cache.incr("n") == 11
    assert cache.incr("n", 5) == 16
    assert cache.decr("n", 20) == -4
    assert cache.get("n") == -4
    with pytest.raises(ValueError):
        cache.incr("missing")


def test_incr_of_a_value_the_store_cannot_add_to(cache):
    cache.set("big", 2**63 - 1)
    assert cache.incr("big") == 2**63  # beyond 64 bits: read, add, write back
    assert cache.get("big") == 2**63


def test_timeouts(cache):
    cache.set("forever", 1, timeout=None)
    cache.set("short", 1, timeout=0.5)
    cache.set("zero", 1, timeout=0)
    cache.set("negative", 1, timeout=-1)
    assert cache.get("zero") is None and cache.get("negative") is None
    assert cache.get("short") == 1
    time.sleep(0.7)
    assert cache.get("short") is None
    assert cache.get("forever") == 1
    assert cache.ttl("forever") is None
    cache.set("default", 1)
    assert 295 <= cache.ttl("default") <= 300


def test_touch(cache):
    cache.set("k", 1, timeout=0.5)
    assert cache.touch("k", None) is True
    time.sleep(0.7)
    assert cache.get("k") == 1
    assert cache.touch("missing") is False
    assert cache.touch("k", 0) is True
    assert cache.get("k") is None


def test_get_or_set(cache):
    assert cache.get_or_set("k", "computed") == "computed"
    assert cache.get_or_set("k", lambda: "other") == "computed"


def test_versions(cache):
    cache.set("k", "v1", version=1)
    cache.set("k", "v2", version=2)
    assert cache.get("k") == "v1"
    assert cache.get("k", version=2) == "v2"
    assert cache.incr_version("k") == 2
    assert cache.get("k") is None
    assert cache.get("k", version=2) == "v1"
    assert cache.decr_version("k", version=2) == 1
    assert cache.get("k") == "v1"


def test_clear_deletes_only_this_prefix_and_version(caches, redis_server):
    cache = caches["aicache_json"]
    raw = redis_server.client()
    raw.set("foreign", "x")
    raw.set("blbs_erp:2:k", "1")
    raw.set("other:1:k", "1")
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.clear() == 2
    assert raw.get("foreign") == b"x"
    assert raw.get("blbs_erp:2:k") == b"1"
    assert raw.get("other:1:k") == b"1"


def test_key_function(caches, redis_server):
    cache = caches["aicache_keyfunc"]
    cache.set("k", [1])
    assert redis_server.client().get("kf|blbs_erp|1|k") == b"[1]"
    assert cache.get("k") == [1]


def test_pickle_keeps_python_types(caches):
    for alias in ("default", "aicache_pickle"):
        cache = caches[alias]
        value = {"when": datetime.date(2024, 1, 2), "set": {1, 2}, "d": decimal.Decimal("1.5"),
                 "bytes": b"\x00\xff", "tuple": (1, 2)}
        cache.set("k", value)
        assert cache.get("k") == value


def test_memory_store_keeps_plain_values_in_the_compact_form(caches):
    # LOCATION "" with pickle: plain values in aicache's private form (no
    # other process reads the memory store), anything else pickled as before.
    import collections
    from aicache._aicache import _PACKED_TAG, _pack
    cache = caches["default"]
    store = cache._store

    value = {"messages": [{"role": "user", "content": "你好 🤖", "n": 1}], "t": (1, 2.5)}
    cache.set("k", value)
    assert store.get(cache.make_key("k"))[:1] == _PACKED_TAG
    got = cache.get("k")
    assert got == value
    got["messages"].append("changed")  # a fresh copy each time, as LocMemCache's
    assert cache.get("k") == value

    ordered = collections.OrderedDict(b=1, a=2)
    shared = [1]
    for other in (ordered, {"x": shared, "y": shared}, [2 ** 70], datetime.date(2024, 1, 2)):
        cache.set("p", other)
        assert store.get(cache.make_key("p"))[:1] == b"\x80"  # pickle's
        assert cache.get("p") == other
    assert type(cache.get("p")) is datetime.date
    cache.set("p", ordered)
    assert type(cache.get("p")) is collections.OrderedDict
    cache.set("p", {"x": shared, "y": shared})
    back = cache.get("p")
    assert back["x"] is back["y"]  # pickle keeps the identity

    # Every path: add, set_many, get_many, incr of a packed number, ints as digits.
    assert cache.add("a", [1]) is True
    cache.set_many({"m1": {"a": 1}, "m2": "two", "n": 5})
    assert store.get(cache.make_key("m1"))[:1] == _PACKED_TAG
    assert store.get(cache.make_key("n")) == b"5"
    assert cache.get_many(["a", "m1", "m2", "n"]) == {"a": [1], "m1": {"a": 1}, "m2": "two",
                                                      "n": 5}
    cache.set("f", 1.5)
    assert cache.incr("f", 2) == 3.5
    assert store.get(cache.make_key("f"))[:1] == _PACKED_TAG
    assert cache.incr("n") == 6 and store.get(cache.make_key("n")) == b"6"

    # Every cache of LOCATION "" shares the store: a json one reads the form too.
    json_cache = caches["memory_json"]
    json_cache._store.set(json_cache.make_key("j"), _pack(["x"]), None)
    assert json_cache.get("j") == ["x"]
    json_cache.set("j2", {"a": 1})
    assert json_cache._store.get(json_cache.make_key("j2")) == b'{"a": 1}'


def test_redis_keeps_pickles_bytes(caches, redis_server):
    cache = caches["aicache_pickle"]
    cache.set("k", {"a": "你好"})
    assert redis_server.client().get("blbs_erp:1:k")[:1] == b"\x80"


def test_json_uses_djangos_encoder(caches):
    cache = caches["aicache_json"]
    cache.set("k", {"when": datetime.date(2024, 1, 2), "d": decimal.Decimal("1.5")})
    assert cache.get("k") == {"when": "2024-01-02", "d": "1.5"}


def test_errors_raise_by_default_and_are_misses_when_ignored(caches):
    import aicache
    down = caches["aicache_down"]
    with pytest.raises(aicache.StoreError):
        down.get("k")
    with pytest.raises(aicache.StoreError):
        down.set("k", 1)
    ignored = caches["aicache_down_ignored"]
    assert ignored.get("k") is None
    assert ignored.get("k", "fallback") == "fallback"
    assert ignored.set("k", 1) is None
    assert ignored.add("k", 1) is False
    assert ignored.get_many(["a", "b"]) == {}
    assert ignored.delete("k") is False


def test_close_keeps_working(cache):
    cache.set("k", 1)
    cache.close()
    assert cache.get("k") == 1


def test_bad_settings():
    from django.core.exceptions import ImproperlyConfigured
    from aicache.django import AicacheCache
    with pytest.raises(ImproperlyConfigured):
        AicacheCache("memcached://x", {})
    with pytest.raises(ImproperlyConfigured):
        AicacheCache("", {"OPTIONS": {"SERIALIZER": "msgpack"}})


# --- Sharing entries with django-redis -----------------------------------------------

VALUES = [0, 1, -42, 2**62, 2**70, True, False, None, 1.5, "", "text", "中文 🤖",
          [1, "two", None], {"messages": [{"role": "user", "content": "你好"}], "n": 3}]


@pytest.mark.parametrize("serializer", ["pickle", "json"])
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_django_redis_and_aicache_read_each_other(caches, redis_server, serializer, value):
    ours = caches[f"aicache_{serializer}"]
    theirs = caches[f"django_redis_{serializer}"]
    raw = redis_server.client()

    theirs.set("from_django_redis", value)
    assert ours.get("from_django_redis", "MISS") == value

    ours.set("from_aicache", value)
    assert theirs.get("from_aicache", "MISS") == value

    # Byte for byte the same entry.
    assert raw.get("blbs_erp:1:from_aicache") == raw.get("blbs_erp:1:from_django_redis")


@pytest.mark.parametrize("serializer", ["pickle", "json"])
def test_incr_and_ttl_across_backends(caches, serializer):
    ours = caches[f"aicache_{serializer}"]
    theirs = caches[f"django_redis_{serializer}"]
    theirs.set("n", 5)
    assert ours.incr("n", 2) == 7
    assert theirs.incr("n") == 8
    assert ours.get("n") == 8
    ours.set("t", "x", timeout=120)
    assert 115 <= theirs.ttl("t") <= 120
    theirs.set("forever", "x", timeout=None)
    assert ours.ttl("forever") is None
    assert ours.get_many(["n", "t"]) == {"n": 8, "t": "x"}
    assert theirs.get_many(["n", "t"]) == {"n": 8, "t": "x"}


def test_the_typed_cache_and_django_redis_json_share_entries(caches, redis_server):
    import aicache
    typed = aicache.AssistantCache(url=redis_server.url, key_prefix="blbs_erp")
    theirs = caches["django_redis_json"]
    typed.set_access_token("wechat", "wx1", "TOKEN")
    assert theirs.get("ai_assistant:access_token:wechat:wx1") == "TOKEN"
    theirs.set("ai_assistant:conversation:c1", {"messages": ["hi"]})
    assert typed.get_conversation("c1") == {"messages": ["hi"]}
