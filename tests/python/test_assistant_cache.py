"""aicache.AssistantCache: the Django system's AIAssistantCache tests, ported,
on the memory store and on a real redis-server; then what the binding adds
(ids, JSON types, statistics, constructors, errors, threads)."""

import threading
import time

import pytest

import aicache
from conftest import write_config


@pytest.fixture(params=["memory", "redis"])
def cache(request):
    if request.param == "memory":
        return aicache.AssistantCache()
    return aicache.AssistantCache(url=request.getfixturevalue("redis_url"))


# --- The Django system's twelve cases ---------------------------------------------

def test_set_and_get_access_token(cache):
    cache.set_access_token("wechat", "wx123", "test_token_123")
    assert cache.get_access_token("wechat", "wx123") == "test_token_123"


def test_get_missing_access_token_is_none(cache):
    assert cache.get_access_token("wechat", "nonexistent") is None


def test_delete_access_token(cache):
    cache.set_access_token("wechat", "wx123", "test_token_123")
    assert cache.delete_access_token("wechat", "wx123") is True
    assert cache.get_access_token("wechat", "wx123") is None
    assert cache.delete_access_token("wechat", "wx123") is False


def test_access_token_expires(cache):
    cache.set_access_token("wechat", "wx123", "short_lived", timeout=0.5)
    assert cache.get_access_token("wechat", "wx123") == "short_lived"
    time.sleep(0.7)
    assert cache.get_access_token("wechat", "wx123") is None


def test_channels_are_isolated(cache):
    cache.set_access_token("wechat", "app1", "wechat_token")
    cache.set_access_token("dingtalk", "app1", "dingtalk_token")
    assert cache.get_access_token("wechat", "app1") == "wechat_token"
    assert cache.get_access_token("dingtalk", "app1") == "dingtalk_token"


def test_set_and_get_conversation(cache):
    data = {"messages": [{"role": "user", "content": "Hello"}], "user_id": "user_123"}
    cache.set_conversation("conv_123", data)
    assert cache.get_conversation("conv_123") == data


def test_conversation_with_complex_data(cache):
    data = {
        "messages": [
            {"role": "user", "content": "你好，请介绍一下你自己", "timestamp": 1700000000},
            {"role": "assistant", "content": "我是AI助手 🤖", "tokens": 42, "score": 0.75},
        ],
        "metadata": {"channel": "wechat", "nested": {"deep": [1, 2, {"x": None}]},
                     "flags": [True, False]},
    }
    cache.set_conversation("conv_complex", data)
    assert cache.get_conversation("conv_complex") == data


def test_delete_conversation(cache):
    cache.set_conversation("conv_123", {"messages": []})
    assert cache.delete_conversation("conv_123") is True
    assert cache.get_conversation("conv_123") is None


def test_set_and_get_ai_config(cache):
    config = {"model": "gpt-4", "temperature": 0.7, "max_tokens": 1000}
    cache.set_ai_config("user_123", config)
    assert cache.get_ai_config("user_123") == config


def test_ai_config_is_per_user(cache):
    cache.set_ai_config("user_1", {"model": "gpt-4"})
    cache.set_ai_config("user_2", {"model": "gpt-3.5-turbo"})
    assert cache.get_ai_config("user_1") == {"model": "gpt-4"}
    assert cache.get_ai_config("user_2") == {"model": "gpt-3.5-turbo"}


def test_generic_operations(cache):
    cache.set("test_key", "test_value")
    assert cache.get("test_key") == "test_value"
    assert cache.get("missing_key") is None
    assert cache.get("missing_key", "default") == "default"
    assert cache.delete("test_key") is True
    assert cache.get("test_key") is None


def test_get_stats(cache):
    cache.set("k", 1)
    stats = cache.get_stats()
    for key in ("used_memory", "connected_clients", "total_commands_processed"):
        assert key in stats
    assert isinstance(stats["used_memory"], str)
    assert isinstance(stats["connected_clients"], int)
    assert isinstance(stats["total_commands_processed"], int)
    assert stats["backend"] in ("memory", "redis")
    assert stats["store_errors"] == 0
    if stats["backend"] == "redis":
        assert stats["connected_clients"] >= 1


# --- What the binding adds ----------------------------------------------------------

def test_ids_may_be_int(cache):
    cache.set_conversation(42, {"a": 1})
    assert cache.get_conversation("42") == {"a": 1}
    cache.set_ai_config(7, {"m": "x"})
    assert cache.get_ai_config(7) == {"m": "x"}
    cache.set_access_token("wecom", 12345, "tok")
    assert cache.get_access_token("wecom", "12345") == "tok"
    with pytest.raises(TypeError, match="conversation_id must be str or int, not float"):
        cache.get_conversation(1.5)


@pytest.mark.parametrize("value", [None, True, False, 0, -7, 2**63 - 1, 1.25, "", "文字",
                                   [], [1, "a", None], {}, {"a": {"b": [1.5]}}])
def test_json_values_round_trip(cache, value):
    cache.set("v", value)
    if value is None:
        # A stored null reads as None, the same as a miss.
        assert cache.get("v", "default") in (None, "default")
    else:
        assert cache.get("v") == value


def test_tuples_are_lists_and_int_keys_are_strings(cache):
    cache.set("v", {"t": (1, 2), 3: "three"})
    assert cache.get("v") == {"t": [1, 2], "3": "three"}


@pytest.mark.parametrize("value,name", [({1, 2}, "set"), (b"x", "bytes"), (object(), "object"),
                                        ({"a": [1, {2}]}, "set"), (1j, "complex")])
def test_non_json_values_raise_type_error_naming_the_type(cache, value, name):
    with pytest.raises(TypeError, match=f"Object of type {name} is not JSON serializable"):
        cache.set("v", value)
    with pytest.raises(TypeError):
        cache.set_conversation("c", value)


def test_out_of_range_values(cache):
    with pytest.raises(OverflowError):
        cache.set("v", 2**64)
    with pytest.raises(ValueError):
        cache.set("v", float("nan"))


def test_incr_and_clear(cache):
    assert cache.incr("n") == 1
    assert cache.incr("n", 5) == 6
    cache.set_access_token("wechat", "wx1", "t")
    assert cache.clear() >= 2
    assert cache.get("n") is None
    assert cache.get_access_token("wechat", "wx1") is None


def test_reserved_keys_are_refused_for_generic_writes(cache):
    with pytest.raises(aicache.InvalidArgumentError) as e:
        cache.set("ai_assistant:access_token:wechat:wx1", "forged")
    assert isinstance(e.value, ValueError)
    assert e.value.code == "invalid_argument"


def test_invalid_token_is_refused(cache):
    with pytest.raises(aicache.InvalidArgumentError):
        cache.set_access_token("wechat", "wx1", "has space")
    with pytest.raises(aicache.InvalidArgumentError):
        cache.get_access_token("wechat", "a:b")


def test_timeout_zero_removes(cache):
    cache.set("k", "v")
    cache.set("k", "v", timeout=0)
    assert cache.get("k") is None


def test_django_compatible_keys_and_values(redis_server, redis_url):
    cache = aicache.AssistantCache(url=redis_url, key_prefix="blbs_erp", key_version=2)
    assert (cache.key_prefix, cache.key_version, cache.backend) == ("blbs_erp", 2, "redis")
    cache.set_access_token("wechat", "wx123", "tok")
    cache.set("count", 5)
    cache.set_conversation("c1", {"messages": ["hi"]})
    raw = redis_server.client()
    assert raw.get("blbs_erp:2:ai_assistant:access_token:wechat:wx123") == b'"tok"'
    assert raw.get("blbs_erp:2:count") == b"5"
    assert raw.get("blbs_erp:2:ai_assistant:conversation:c1") == b'{"messages":["hi"]}'
    ttl = raw.pttl("blbs_erp:2:ai_assistant:access_token:wechat:wx123")
    assert 7_100_000 < ttl <= 7_200_000


def test_from_config(clean_env, redis_url, redis_server):
    path = write_config(clean_env, redis_url=redis_url, key_prefix="cfg")
    cache = aicache.AssistantCache.from_config(path)
    assert cache.backend == "redis" and cache.key_prefix == "cfg"
    cache.set("x", 1)
    assert redis_server.client().get("cfg:1:x") == b"1"
    # Without a path: ./aicache.toml, as the CLI reads it.
    assert aicache.AssistantCache.from_config().backend == "redis"
    (clean_env / "aicache.toml").unlink()
    assert aicache.AssistantCache.from_config().backend == "memory"  # nothing configured


def test_from_config_errors_are_config_errors(clean_env):
    path = clean_env / "aicache.toml"
    path.write_text("[store]\nkey_version = \"x\"\n")
    with pytest.raises(aicache.ConfigError) as e:
        aicache.AssistantCache.from_config(str(path))
    assert e.value.code == "config"


def test_unreachable_redis_raises_store_error():
    with pytest.raises(aicache.StoreError):
        aicache.AssistantCache(url="redis://127.0.0.1:1/0")


def test_bad_url_raises_config_error():
    with pytest.raises(aicache.ConfigError):
        aicache.AssistantCache(url="http://nope")


def test_help_is_useful():
    doc = aicache.AssistantCache.__doc__
    assert "AIAssistantCache" in doc and "TypeError" in doc
    assert "token" in aicache.AssistantCache.set_access_token.__doc__


# --- Threads --------------------------------------------------------------------

def test_sixteen_threads_share_one_cache(cache):
    """16 Python threads on one cache (on Redis with the GIL released): no
    deadlock, no lost write."""
    errors = []
    n = 200

    def work(t):
        try:
            for i in range(n):
                cache.set(f"t{t}:{i}", {"t": t, "i": i})
                cache.set_access_token("wechat", f"app{t}", f"tok{t}-{i}")
                assert cache.get(f"t{t}:{i}") == {"t": t, "i": i}
                cache.incr("shared")
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads), "deadlock"
    assert errors == []
    assert cache.get("shared") == 16 * n
    for t in range(16):
        assert cache.get_access_token("wechat", f"app{t}") == f"tok{t}-{n - 1}"
        for i in range(n):
            assert cache.get(f"t{t}:{i}") == {"t": t, "i": i}


TEXTS = ["quote \" backslash \\ slash /", "controls \x00\x01\x1f\x7f\n\r\t\b\f", "中文 🤖 é",
         "x" * 5000]
FLOATS = [0.0, -0.0, 1.0, 1e-7, 1.5e300, 123456789.125, -2.5]


@pytest.mark.parametrize("value", TEXTS + FLOATS + [{"k": TEXTS, "f": FLOATS}], ids=repr)
def test_text_and_numbers_round_trip_exactly(cache, value):
    # Small documents are read through the C++ parser, large ones (256 bytes
    # and more) through the json module: both must give back what was stored.
    cache.set("v", value)
    assert cache.get("v") == value
    cache.set_conversation("c", {"big": "y" * 300, "v": value})
    assert cache.get_conversation("c") == {"big": "y" * 300, "v": value}


def test_the_stored_text_is_compact_json(redis_server, redis_url):
    import json
    cache = aicache.AssistantCache(url=redis_url)
    value = {"b": [1, 2.5, None, True], "a": "中\n\"x\""}
    cache.set("v", value)
    raw = redis_server.client().get(":1:v")
    assert raw == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(raw) == value


def test_lone_surrogates_are_refused(cache):
    with pytest.raises(UnicodeEncodeError):
        cache.set("v", "\ud83d")


def test_the_gil_is_released_while_redis_answers(redis_server, redis_url):
    """A call waiting on Redis (paused with CLIENT PAUSE) lets other Python
    threads run."""
    cache = aicache.AssistantCache(url=redis_url)
    cache.set("k", "v")
    redis_server.client().execute_command("CLIENT", "PAUSE", "800", "ALL")
    reader = threading.Thread(target=cache.get, args=("k",))
    started = time.monotonic()
    reader.start()
    time.sleep(0.1)
    start = time.monotonic()
    for _ in range(20):
        time.sleep(0.002)  # needs the GIL back after each sleep
    elapsed = time.monotonic() - start
    still_waiting = reader.is_alive()
    reader.join(timeout=10)
    assert time.monotonic() - started > 0.5  # the read did wait for the pause
    assert still_waiting
    assert elapsed < 0.4, f"the main thread was held up {elapsed:.2f} s"
