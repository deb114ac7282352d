"""The Django test project's settings: aicache's backend beside django-redis
and LocMemCache on one redis-server (AICACHE_TEST_REDIS_URL, set by the
tests' fixture before Django is set up)."""

import os

REDIS_URL = os.environ.get("AICACHE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# A port nothing listens on: the store is down.
DOWN_URL = "redis://127.0.0.1:1/0"

SECRET_KEY = "aicache-tests-only"
USE_TZ = True
INSTALLED_APPS = []
DATABASES = {}


def _aicache(location, serializer, prefix="blbs_erp", **options):
    return {
        "BACKEND": "aicache.django.AicacheCache",
        "LOCATION": location,
        "KEY_PREFIX": prefix,
        "VERSION": 1,
        "TIMEOUT": 300,
        "OPTIONS": {"SERIALIZER": serializer, **options},
    }


def _django_redis(serializer):
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "blbs_erp",
        "VERSION": 1,
        "TIMEOUT": 300,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SERIALIZER": f"django_redis.serializers.{serializer}",
        },
    }


CACHES = {
    "default": _aicache("", "pickle", prefix="mem_pickle"),
    "memory_json": _aicache("", "json", prefix="mem_json"),
    "aicache_pickle": _aicache(REDIS_URL, "pickle"),
    "aicache_json": _aicache(REDIS_URL, "json"),
    "django_redis_pickle": _django_redis("pickle.PickleSerializer"),
    "django_redis_json": _django_redis("json.JSONSerializer"),
    "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
               "LOCATION": "bench", "TIMEOUT": 300},
    "aicache_down": _aicache(DOWN_URL, "json", SOCKET_CONNECT_TIMEOUT=0.2),
    "aicache_down_ignored": _aicache(DOWN_URL, "json", IGNORE_EXCEPTIONS=True,
                                     SOCKET_CONNECT_TIMEOUT=0.2),
    "aicache_keyfunc": {**_aicache(REDIS_URL, "json"),
                        "KEY_FUNCTION": "django_project.keys.reversed_key"},
}
