"""Fork safety: what gunicorn and uwsgi do (import, open, then fork workers).

A forked child opens its own connections and runs its own refresher; nothing
the parent held is used in the child, so no socket is shared and no lock held
by another parent thread at the fork can block the child."""

import os
import threading
import time

import pytest

import aicache
from aicache import _aicache
from conftest import APP_ID, write_config


def fork_workers(n, work):
    """Runs work(i) in n forked children; answers what each wrote (a line) in
    order. A child that raises answers "ERROR: ..."; a child that hangs fails
    the test after 30 s."""
    children = []
    for i in range(n):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            os.close(read_end)
            try:
                answer = str(work(i))
            except BaseException as e:  # reported to the parent
                answer = f"ERROR: {type(e).__name__}: {e}"
            os.write(write_end, (answer.replace("\n", " ") + "\n").encode())
            os._exit(0)
        os.close(write_end)
        children.append((pid, read_end))
    answers = []
    deadline = time.monotonic() + 30
    for pid, read_end in children:
        while True:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail(f"forked worker {pid} hung")
            time.sleep(0.01)
        with os.fdopen(read_end) as f:
            answers.append(f.read().strip())
    return answers


def test_eight_forked_workers_on_a_cold_cache_make_one_fetch(clean_env, fake_platform, redis_url):
    path = write_config(clean_env, redis_url=redis_url, base_url=fake_platform.base_url)
    # Opened in the parent, with its refresher running, as a preloaded app does.
    tokens = aicache.TokenManager.from_config(path, refresh_interval=0.05)
    fake_platform.configure(delay=0.3)
    generation = _aicache._fork_generation()

    def worker(_):
        assert _aicache._fork_generation() == generation + 1
        return tokens.access_token("wechat", APP_ID)

    answers = fork_workers(8, worker)
    assert not [a for a in answers if a.startswith("ERROR")], answers
    assert len(set(answers)) == 1
    # The parent's refresher and eight children: one fetch between them.
    assert fake_platform.fetches == 1
    assert tokens.access_token("wechat", APP_ID) == answers[0]
    tokens.close()


def test_a_childs_connections_are_its_own(redis_server, redis_url):
    cache = aicache.AssistantCache(url=redis_url)
    cache.set("parent", "p")
    raw = redis_server.client()
    before = len(raw.client_list())
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def worker(i):
        # Its own values, many times over: a socket shared with the parent or
        # a sibling would hand one process another's replies.
        for n in range(300):
            cache.set(f"child{i}", {"i": i, "n": n})
            assert cache.get(f"child{i}") == {"i": i, "n": n}
        os.write(ready_w, b"x")
        os.read(go_r, 1)  # hold the connections until the parent has counted
        return "ok"

    counted = {}

    def count_then_release():
        for _ in range(4):
            os.read(ready_r, 1)
        counted["clients"] = len(raw.client_list())
        os.write(go_w, b"xxxx")

    counter = threading.Thread(target=count_then_release)
    counter.start()
    for n in range(300):  # the parent keeps using its own connection meanwhile
        cache.set("parent", n)
    answers = fork_workers(4, worker)
    counter.join(timeout=30)
    assert answers == ["ok"] * 4
    assert counted["clients"] >= before + 4
    assert cache.get("parent") == 299
    for i in range(4):
        assert cache.get(f"child{i}") == {"i": i, "n": 299}


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_fork_while_another_thread_is_inside_the_cache(backend, request):
    url = request.getfixturevalue("redis_url") if backend == "redis" else None
    cache = aicache.AssistantCache(url=url)
    stop = threading.Event()

    def busy():
        n = 0
        while not stop.is_set():
            cache.set_conversation("busy", {"n": n, "pad": "x" * 8000})
            cache.get_conversation("busy")
            n += 1

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        time.sleep(0.05)

        def worker(i):
            cache.set(f"w{i}", i)
            return cache.get(f"w{i}")

        answers = fork_workers(4, worker)
    finally:
        stop.set()
        thread.join()
    assert answers == ["0", "1", "2", "3"]


def test_a_forked_child_starts_with_its_own_empty_memory_store():
    cache = aicache.AssistantCache()
    cache.set("inherited", 1)
    answers = fork_workers(1, lambda _: cache.get("inherited", "absent"))
    assert answers == ["absent"]
    assert cache.get("inherited") == 1


def test_a_store_reopens_after_fork(redis_url):
    store = aicache.Store.redis(redis_url)
    store.set("k", b"parent", None)

    def worker(i):
        store.set(f"s{i}", b"child", None)
        return store.get(f"s{i}").decode() + "/" + store.get("k").decode()

    assert fork_workers(2, worker) == ["child/parent"] * 2


def test_a_forked_worker_starts_its_own_refresher_at_once(clean_env, fake_platform, redis_url,
                                                          monkeypatch):
    """Right after os.fork, before any call, the child runs its own refresher
    thread (os.register_at_fork): a child has only the forking thread
    otherwise."""
    # Without the Redis store's near cache, whose invalidation subscriber is
    # one more thread per store (docs/near_cache.md): only refreshers counted.
    monkeypatch.setenv("AICACHE_NEAR_CACHE_MAX_BYTES", "0")
    path = write_config(clean_env, redis_url=redis_url, base_url=fake_platform.base_url)

    def threads(_):
        return len(os.listdir("/proc/self/task"))

    without = aicache.TokenManager.from_config(path, refresh_interval=0)
    assert fork_workers(1, threads) == ["1"]
    with_refresher = aicache.TokenManager.from_config(path, refresh_interval=3600)
    assert fork_workers(1, threads) == ["2"]
    with_refresher.close()  # no refresher here, nor in children forked later
    assert fork_workers(1, threads) == ["1"]
    without.close()
