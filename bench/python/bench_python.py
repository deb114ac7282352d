#!/usr/bin/env python3
"""Python and Django figures, measured side by side in one run.

    PYTHONPATH=build/python /usr/bin/python3 bench/python/bench_python.py

Starts its own redis-server on a free loopback port. Each figure is the
median (p50) and p99 over ROUNDS rounds of the mean time of one call in a
round of BATCH calls (a single call is shorter than the timer's own cost), so
a figure is a per-call time of a warm loop on one thread.

  token hit          aicache.AssistantCache.get_access_token, memory store
  django get         cache.get(key) of a short string through Django's cache API:
                     aicache.django.AicacheCache ("" LOCATION) vs LocMemCache
  conversation       cache.set + cache.get of an 8.5 KB conversation (LocMemCache pickles;
                     AicacheCache on the memory store keeps it in aicache's compact form,
                     python/src/value_codec.h), the two encodings alone, and
                     AssistantCache's typed set_conversation + get_conversation
  redis token hit    AssistantCache(url).get_access_token vs django-redis's cache.get
                     (JSONSerializer) of the same key on the same redis-server
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROUNDS = int(os.environ.get("AICACHE_BENCH_ROUNDS", 200))
BATCH = 1000


def measure(call, batch=BATCH, rounds=ROUNDS):
    for _ in range(batch):  # warm up
        call()
    per_call = []
    timer = time.perf_counter_ns
    for _ in range(rounds):
        start = timer()
        for _ in range(batch):
            call()
        per_call.append((timer() - start) / batch)
    per_call.sort()
    return per_call[len(per_call) // 2], per_call[int(len(per_call) * 0.99) - 1]


def show(name, figures):
    p50, p99 = figures
    print(f"  {name:58s} p50 {p50 / 1000:8.3f} us   p99 {p99 / 1000:8.3f} us", flush=True)
    return p50


def start_redis(directory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.01)
    raise SystemExit("redis-server did not start")


def conversation():
    messages = [{"role": "user" if i % 2 == 0 else "assistant",
                 "content": ("你好，请帮我查一下订单状态。" if i % 2 == 0 else
                             "您好！您的订单已发货，预计明天送达。") * 4,
                 "timestamp": 1700000000 + i} for i in range(20)]
    return {"messages": messages, "user_id": "user_123", "channel": "wechat"}


def main():
    import aicache

    workdir = tempfile.mkdtemp()
    redis_process, url = start_redis(workdir)
    try:
        import django
        from django.conf import settings
        settings.configure(CACHES={
            "default": {"BACKEND": "aicache.django.AicacheCache", "LOCATION": "",
                        "KEY_PREFIX": "bench", "TIMEOUT": 300},
            "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                       "LOCATION": "bench", "KEY_PREFIX": "bench", "TIMEOUT": 300},
            "django_redis": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url,
                             "KEY_PREFIX": "blbs_erp", "TIMEOUT": 300,
                             "OPTIONS": {"SERIALIZER":
                                         "django_redis.serializers.json.JSONSerializer"}},
        })
        django.setup()
        from django.core.cache import caches

        conv = conversation()
        import pickle
        print(f"python {sys.version.split()[0]}, django {django.get_version()}, aicache "
              f"{aicache.__version__}; conversation {len(pickle.dumps(conv))} bytes pickled, "
              f"{len(__import__('json').dumps(conv))} bytes as JSON, "
              f"{len(aicache._aicache._pack(conv))} bytes packed")

        print("memory store")
        cache = aicache.AssistantCache()
        cache.set_access_token("wechat", "wx0123456789abcdef", "ACCESS_TOKEN_" + "x" * 100)
        show("AssistantCache.get_access_token (hit)",
             measure(lambda: cache.get_access_token("wechat", "wx0123456789abcdef")))

        show("AssistantCache.set_conversation + get_conversation (8.5 KB)",
             measure(lambda: (cache.set_conversation("c1", conv), cache.get_conversation("c1")),
                     batch=100))

        ours, locmem = caches["default"], caches["locmem"]
        value = "ACCESS_TOKEN_" + "x" * 100
        ours.set("token", value)
        locmem.set("token", value)
        a = show("Django cache.get, aicache.django.AicacheCache", measure(lambda: ours.get("token")))
        b = show("Django cache.get, LocMemCache", measure(lambda: locmem.get("token")))
        print(f"  -> AicacheCache / LocMemCache = {a / b:.2f}")

        def set_get(c):
            return lambda: (c.set("conv", conv), c.get("conv"))

        a = show("conversation set + get, AicacheCache", measure(set_get(ours), batch=100))
        b = show("conversation set + get, LocMemCache", measure(set_get(locmem), batch=100))
        print(f"  -> AicacheCache / LocMemCache = {a / b:.2f}")
        pack, unpack = aicache._aicache._pack, aicache._aicache._unpack
        packed, pickled = pack(conv), pickle.dumps(conv)
        show("conversation pickle.dumps + pickle.loads",
             measure(lambda: (pickle.dumps(conv), pickle.loads(pickled)), batch=100))
        show("conversation _pack + _unpack (AicacheCache's on memory)",
             measure(lambda: (pack(conv), unpack(packed)), batch=100))

        print("redis store (same redis-server)")
        rcache = aicache.AssistantCache(url=url, key_prefix="blbs_erp")
        rcache.set_access_token("wechat", "wx0123456789abcdef", value)
        dj = caches["django_redis"]
        key = "ai_assistant:access_token:wechat:wx0123456789abcdef"
        assert dj.get(key) == value
        a = show("AssistantCache.get_access_token (hit)",
                 measure(lambda: rcache.get_access_token("wechat", "wx0123456789abcdef"),
                         batch=100, rounds=100))
        b = show("django-redis cache.get of the same key",
                 measure(lambda: dj.get(key), batch=100, rounds=100))
        print(f"  -> aicache / django-redis = {a / b:.3f}")
    finally:
        redis_process.terminate()
        redis_process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
