"""aicache.django.AicacheCache: a Django cache backend over aicache's C++ stores.

    CACHES = {
        "default": {
            "BACKEND": "aicache.django.AicacheCache",
            "LOCATION": "redis://127.0.0.1:6379/1",   # or "" for the in-process memory store
            "KEY_PREFIX": "blbs_erp",
            "VERSION": 1,
            "TIMEOUT": 300,
            "OPTIONS": {"SERIALIZER": "json"},         # or "pickle" (the default)
        }
    }

Stored keys and values are byte for byte what django-redis (DefaultClient)
writes with the same settings: the key is KEY_FUNCTION's (Django's default
"{KEY_PREFIX}:{VERSION}:{key}"); an int (not a bool) is stored as its decimal
digits and anything else through the serializer: "pickle" is django-redis's
PickleSerializer (pickle.DEFAULT_PROTOCOL, or OPTIONS["PICKLE_VERSION"]),
"json" its JSONSerializer (json.dumps with DjangoJSONEncoder). So an
application that changes only BACKEND keeps reading every entry django-redis
wrote, and django-redis reads aicache's.

On the in-process memory store (LOCATION "") with the pickle serializer, no
other process reads the bytes, so plain values (exact dict, list, tuple, str,
int, float, bool, None, bytes; no shared or cyclic containers) are stored in
aicache's private compact form instead of pickle's (aicache._aicache._pack:
strings kept in CPython's own representation, no UTF-8 round trip); get still
hands out a fresh copy, as LocMemCache's pickling does, and anything else is
pickled as before. Redis LOCATIONs always store django-redis's bytes.

OPTIONS: SERIALIZER ("pickle", "json", or django-redis's dotted class paths of
the two); PASSWORD (overrides the URL's); CONNECTION_POOL_KWARGS
{"max_connections": N} (the pool size, 50 by default); SOCKET_TIMEOUT and
SOCKET_CONNECT_TIMEOUT (seconds, 1 by default); PICKLE_VERSION;
IGNORE_EXCEPTIONS (False by default: store failures raise aicache.StoreError,
as django-redis raises; True turns them into misses, as django-redis's option
does). Other options are ignored, as django-redis ignores them.

Redis topologies, with django-redis's settings where it has them:

    # TLS: a rediss:// LOCATION; redis-py's ssl_* names in CONNECTION_POOL_KWARGS
    "LOCATION": "rediss://redis.example.com:6380/1",
    "OPTIONS": {"CONNECTION_POOL_KWARGS": {
        "ssl_ca_certs": "/etc/redis/ca.crt",       # default: the system's CAs
        "ssl_certfile": "/etc/redis/client.crt",   # a client certificate, with
        "ssl_keyfile": "/etc/redis/client.key",    #   its key (both or neither)
        "ssl_cert_reqs": "required",               # None or "none": no verification
    }}

    # Sentinel: as django-redis's SentinelClient, LOCATION's host is the
    # master's name at the sentinels; aicache needs no CLIENT_CLASS.
    "LOCATION": "redis://mymaster/1",
    "OPTIONS": {
        "SENTINELS": [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26379)],
        "SENTINEL_KWARGS": {"password": "..."},    # the sentinels' requirepass
        "PASSWORD": "...",                         # the master's (or in LOCATION)
    }

ssl_ca_certs, ssl_certfile and ssl_keyfile map to Store.redis's tls_ca_file,
tls_cert_file and tls_key_file; ssl_cert_reqs None / "none" / ssl.CERT_NONE to
tls_verify=False (encrypted but unauthenticated: logged as a warning), anything
else checks the certificate and the host name. With SENTINELS, the master is
asked of the sentinels and followed through failovers; CLIENT_CLASS and
CONNECTION_FACTORY (django-redis's SentinelClient and
SentinelConnectionFactory) are not needed and are ignored.

    # Cluster (aicache's own option: django-redis has no Cluster client):
    # LOCATION gives the user and password only (db 0: a Cluster has no other)
    "LOCATION": "redis://10.0.0.1:7000/0",
    "OPTIONS": {"CLUSTER_NODES": ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"]}

Each key goes to the master of its hash slot (CRC16 of Django's full key, or of
its {hash tag}); get_many, set_many and delete_many are split by master;
clear() scans every master for this cache's prefix.

TIMEOUT: None never expires; 0 and negative expire at once (set deletes).
clear() deletes only this cache's KEY_PREFIX and VERSION, never the database.
Every backend instance of one LOCATION (Django makes one per thread) shares
one store and its connection pool; close() keeps them (it runs after every
request). After a fork each worker opens its own connections.
"""

import functools
import json
import os
import pickle
import ssl
import threading
import urllib.parse

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache, default_key_func
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder

from . import InvalidArgumentError, Store, StoreError
from ._aicache import _PACKED_TAG, _pack, _unpack

__all__ = ["AicacheCache"]

# Stores by (location, connection settings): one pool per process and server.
_stores = {}
_stores_lock = threading.Lock()


def _after_fork_in_child():
    # Another thread of the parent may have held the lock at the fork; the
    # stores themselves re-open their connections in the child on first use.
    global _stores_lock
    _stores_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)

# The first bytes int() may accept (whitespace, a sign, a digit). Anything
# else is not an int, so decode() skips the attempt (and its exception).
_INT_START = frozenset(b" \t\n\r\x0b\x0c+-0123456789")

# Store failures IGNORE_EXCEPTIONS turns into misses (django-redis:
# ConnectionInterrupted, i.e. the server could not be reached or answered
# too late).
_OUTAGES = frozenset({"unavailable", "timeout", "resource_exhausted"})

_pickle_loads = pickle.loads


class _PickleSerializer:
    def __init__(self, options):
        self.protocol = pickle.DEFAULT_PROTOCOL
        if "PICKLE_VERSION" in options:
            try:
                self.protocol = int(options["PICKLE_VERSION"])
            except (TypeError, ValueError):
                raise ImproperlyConfigured("PICKLE_VERSION value must be an integer")
            if self.protocol > pickle.HIGHEST_PROTOCOL:
                raise ImproperlyConfigured(
                    f"PICKLE_VERSION can't be higher than pickle.HIGHEST_PROTOCOL:"
                    f" {pickle.HIGHEST_PROTOCOL}")

    def dumps(self, value):
        return pickle.dumps(value, self.protocol)

    loads = staticmethod(pickle.loads)


class _JsonSerializer:
    def __init__(self, options):
        pass

    @staticmethod
    def dumps(value):
        return json.dumps(value, cls=DjangoJSONEncoder).encode()

    @staticmethod
    def loads(value):
        return json.loads(value.decode())


def _serializer(options):
    name = options.get("SERIALIZER", "pickle")
    if not isinstance(name, str):
        raise ImproperlyConfigured("SERIALIZER must be 'pickle' or 'json'")
    lowered = name.lower()
    if lowered == "json" or lowered.endswith("json.jsonserializer"):
        return _JsonSerializer(options)
    if lowered == "pickle" or lowered.endswith("pickle.pickleserializer"):
        return _PickleSerializer(options)
    raise ImproperlyConfigured(f"SERIALIZER {name!r}: aicache has 'pickle' and 'json'")


def _seconds(options, name, default):
    value = options.get(name, default)
    if value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name} must be a number of seconds")


# redis-py's ssl_cert_reqs (ssl.CERT_* or their names): whether the server's
# certificate is checked. CERT_OPTIONAL checks the certificate a server sends,
# and a Redis TLS server always sends one.
_CERT_REQS = {"none": False, "optional": True, "required": True,
              int(ssl.CERT_NONE): False, int(ssl.CERT_OPTIONAL): True,
              int(ssl.CERT_REQUIRED): True}


def _tls_verify(pool_kwargs):
    if "ssl_cert_reqs" not in pool_kwargs:
        return True
    reqs = pool_kwargs["ssl_cert_reqs"]
    if reqs is None:
        return False
    key = reqs.lower() if isinstance(reqs, str) else reqs
    try:
        return _CERT_REQS[key]
    except (KeyError, TypeError):
        raise ImproperlyConfigured(
            "CONNECTION_POOL_KWARGS['ssl_cert_reqs'] must be None, 'none', 'optional', "
            "'required' or an ssl.CERT_* value")


def _redis_topology(options):
    """Store.redis's TLS and Sentinel keyword arguments from django-redis's
    OPTIONS (a dict whose values are hashable, for the store registry)."""
    pool_kwargs = options.get("CONNECTION_POOL_KWARGS") or {}
    topology = {
        "tls_ca_file": pool_kwargs.get("ssl_ca_certs"),
        "tls_cert_file": pool_kwargs.get("ssl_certfile"),
        "tls_key_file": pool_kwargs.get("ssl_keyfile"),
        "tls_verify": _tls_verify(pool_kwargs),
    }
    sentinels = options.get("SENTINELS")
    if sentinels:
        if isinstance(sentinels, (str, bytes)):
            raise ImproperlyConfigured("SENTINELS must be a list of (host, port)")
        topology["sentinels"] = tuple(
            tuple(s) if isinstance(s, (list, tuple)) else s for s in sentinels)
        sentinel_kwargs = options.get("SENTINEL_KWARGS") or {}
        if not isinstance(sentinel_kwargs, dict):
            raise ImproperlyConfigured("SENTINEL_KWARGS must be a dict")
        topology["sentinel_password"] = sentinel_kwargs.get("password")
        topology["sentinel_username"] = sentinel_kwargs.get("username")
        # As django-redis (redis-py's Sentinel): plain TCP to the sentinels
        # unless SENTINEL_KWARGS asks for TLS, whatever LOCATION's scheme.
        ssl = sentinel_kwargs.get("ssl", False)
        if not isinstance(ssl, bool):
            raise ImproperlyConfigured("SENTINEL_KWARGS['ssl'] must be True or False")
        topology["sentinel_tls"] = ssl
    elif options.get("SENTINEL_KWARGS"):
        raise ImproperlyConfigured("SENTINEL_KWARGS needs SENTINELS")
    nodes = options.get("CLUSTER_NODES")
    if nodes:
        if sentinels:
            raise ImproperlyConfigured("CLUSTER_NODES and SENTINELS exclude each other")
        if isinstance(nodes, str):
            nodes = nodes.split(",")
        elif isinstance(nodes, bytes):
            raise ImproperlyConfigured("CLUSTER_NODES must be a list of 'host:port'")
        topology["cluster_nodes"] = tuple(
            tuple(n) if isinstance(n, (list, tuple)) else n for n in nodes)
    read_from_replicas = options.get("READ_FROM_REPLICAS", False)
    if not isinstance(read_from_replicas, bool):
        raise ImproperlyConfigured("READ_FROM_REPLICAS must be True or False")
    if read_from_replicas:
        if not nodes:
            raise ImproperlyConfigured("READ_FROM_REPLICAS needs CLUSTER_NODES")
        topology["read_from_replicas"] = True
    return topology


def _sentinel_master(location):
    """The master's name in django-redis's Sentinel LOCATION,
    redis://[:password@]<master name>[:port]/<db> (the port is ignored)."""
    master = urllib.parse.urlsplit(location).hostname
    if not master:
        raise ImproperlyConfigured(
            "with SENTINELS, LOCATION is redis://<master name>/<db>, as django-redis's")
    return master


def _store_factory(location, options):
    """(registry key, factory) of the store LOCATION names; ImproperlyConfigured
    for anything else."""
    if location in ("", None, "memory:", "memory://"):
        key = ("memory",)
        make = Store.memory
    elif isinstance(location, str) and location.startswith(("redis://", "rediss://", "unix://")):
        password = options.get("PASSWORD")
        pool_kwargs = options.get("CONNECTION_POOL_KWARGS") or {}
        pool = pool_kwargs.get("max_connections", 50)
        socket_timeout = _seconds(options, "SOCKET_TIMEOUT", 1.0)
        connect_timeout = _seconds(options, "SOCKET_CONNECT_TIMEOUT", 1.0)
        topology = _redis_topology(options)
        if "sentinels" in topology:
            if location.startswith("unix://"):
                raise ImproperlyConfigured("with SENTINELS, LOCATION is redis://<master name>/<db>")
            # django-redis's SentinelConnectionFactory also takes the master's
            # password from CONNECTION_POOL_KWARGS.
            password = password or pool_kwargs.get("password")
            topology["sentinel_master"] = _sentinel_master(location)
        if "cluster_nodes" in topology and location.startswith("unix://"):
            raise ImproperlyConfigured("with CLUSTER_NODES, LOCATION is redis:// or rediss://")
        key = ("redis", location, password, pool, socket_timeout, connect_timeout,
               tuple(sorted(topology.items())))

        def make():
            return Store.redis(location, password=password, pool_size=int(pool),
                               socket_timeout=socket_timeout, connect_timeout=connect_timeout,
                               **topology)
    else:
        raise ImproperlyConfigured(
            f"LOCATION {location!r}: aicache takes '' (the memory store) or a "
            "redis://, rediss:// or unix:// URL")
    return key, make


def _open_store(key, make):
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = make()
        return store


def _guarded(default):
    """With IGNORE_EXCEPTIONS, a store outage answers `default` (called with
    the method's arguments when callable) instead of raising."""

    def wrap(method):
        @functools.wraps(method)
        def call(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except StoreError as e:
                if self._ignore_exceptions and e.code in _OUTAGES:
                    return default(*args, **kwargs) if callable(default) else default
                raise

        return call

    return wrap


class AicacheCache(BaseCache):
    """Django's cache API over aicache's memory or Redis store, compatible
    with django-redis's stored entries (see the module's documentation)."""

    def __init__(self, location, params):
        super().__init__(params)
        if isinstance(location, (list, tuple)):
            location = location[0] if location else ""
        self._location = location
        options = params.get("OPTIONS", {}) or {}
        self._options = options
        self._serializer = _serializer(options)
        self._ignore_exceptions = bool(options.get("IGNORE_EXCEPTIONS", False))
        self._store_handle = None
        # Checked now: a wrong LOCATION fails when the cache is configured.
        self._store_key, self._make_store = _store_factory(location, options)
        # Django's default key function, inlined on the hot paths (get, set).
        self._default_keys = self.key_func is default_key_func
        self._key_head = f"{self.key_prefix}:{self.version}:"
        self._pickled = isinstance(self._serializer, _PickleSerializer)
        # The memory store is this process's alone: values may be stored in
        # the compact private form (pickle's bytes are needed only where
        # django-redis may read them). Every cache of LOCATION "" shares that
        # store, so one with the json serializer reads them too.
        self._local = self._store_key == ("memory",)
        self._packs = self._local and self._pickled

    @property
    def _store(self):
        store = self._store_handle
        if store is None:
            store = self._store_handle = _open_store(self._store_key, self._make_store)
        return store

    # --- encoding, as django-redis's DefaultClient ------------------------------
    def _encode(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            return (self._packs and _pack(value)) or self._serializer.dumps(value)
        return repr(value).encode()

    def _decode(self, raw):
        first = raw[:1]
        if first == b"\x80" and self._pickled:  # pickle's PROTO opcode: never an int
            return pickle.loads(raw)
        if first == _PACKED_TAG and self._local:
            return _unpack(raw)
        if first and first[0] in _INT_START:
            try:
                return int(raw)
            except ValueError:
                pass
        return self._serializer.loads(raw)

    def _timeout(self, timeout):
        """Seconds for the store: None never expires, <= 0 removes."""
        if timeout is DEFAULT_TIMEOUT:
            return self.default_timeout
        return timeout

    # --- BaseCache ---------------------------------------------------------------
    @_guarded(False)
    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        key = self.make_key(key, version=version)
        timeout = self._timeout(timeout)
        if timeout is not None and timeout <= 0:
            # Stores nothing; True when the key was absent, as django-redis answers.
            return not self._store.exists(key)
        return self._store.add(key, self._encode(value), timeout)

    # get and set are the hot paths: the key function and the guard inlined.
    def get(self, key, default=None, version=None):
        if version is None and self._default_keys:
            key = f"{self._key_head}{key}"
        else:
            key = self.make_key(key, version=version)
        try:
            if self._local:
                # Unpacked straight from the store; anything else through _decode.
                return (self._store_handle or self._store)._get_decoded(key, default,
                                                                         self._decode)
            raw = (self._store_handle or self._store).get(key)
        except StoreError as e:
            if self._ignore_exceptions and e.code in _OUTAGES:
                return default
            raise
        if raw is None:
            return default
        if raw[:1] == b"\x80" and self._pickled:
            return _pickle_loads(raw)
        return self._decode(raw)

    def set(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        if version is None and self._default_keys:
            key = f"{self._key_head}{key}"
        else:
            key = self.make_key(key, version=version)
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        try:
            store = self._store_handle or self._store
            if isinstance(value, bool) or not isinstance(value, int):
                # Packed straight into the memory store; False: pickle it.
                if self._packs and store._set_packed(key, value, timeout):
                    return
                raw = self._serializer.dumps(value)
            else:
                raw = repr(value).encode()
            store.set(key, raw, timeout)
        except StoreError as e:
            if not (self._ignore_exceptions and e.code in _OUTAGES):
                raise

    @_guarded(False)
    def touch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self._store.touch(self.make_key(key, version=version), self._timeout(timeout))

    @_guarded(False)
    def delete(self, key, version=None):
        return self._store.delete(self.make_key(key, version=version))

    @_guarded(lambda keys, version=None: {})
    def get_many(self, keys, version=None):
        keys = list(keys)
        if not keys:
            return {}
        made = [self.make_key(k, version=version) for k in keys]
        found = {}
        for key, raw in zip(keys, self._store.get_many(made)):
            if raw is not None:
                found[key] = self._decode(raw)
        return found

    @_guarded(lambda data, timeout=None, version=None: list(data))
    def set_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        if not data:
            return []
        entries = [(self.make_key(k, version=version), self._encode(v)) for k, v in data.items()]
        self._store.set_many(entries, self._timeout(timeout))
        return []

    @_guarded(None)
    def delete_many(self, keys, version=None):
        made = [self.make_key(k, version=version) for k in keys]
        if made:
            self._store.delete_many(made)

    @_guarded(False)
    def has_key(self, key, version=None):
        return self._store.exists(self.make_key(key, version=version))

    def incr(self, key, delta=1, version=None):
        made = self.make_key(key, version=version)
        store = self._store
        if not store.exists(made):
            raise ValueError("Key '%s' not found" % key)
        try:
            return store.incr(made, delta)
        except StoreError as e:
            if e.code != "failed_precondition":
                raise
        except InvalidArgumentError:  # the sum overflows 64 bits
            pass
        # Not digits (a pickled number) or out of range: as django-redis does,
        # read, add, and write back with the TTL the entry had.
        ttl = store.ttl(made)
        if ttl == -1.0:
            raise ValueError("Key '%s' not found" % key)
        value = self._decode(store.get(made)) + delta
        store.set(made, self._encode(value), ttl)
        return value

    @_guarded(0)
    def clear(self):
        """Deletes this cache's KEY_PREFIX and VERSION, nothing else."""
        prefix = self.make_key("", version=self.version)
        if not prefix:
            raise ImproperlyConfigured("KEY_FUNCTION gives an empty prefix; clear() refuses "
                                       "to delete every key")
        return self._store.clear(prefix)

    def close(self, **kwargs):
        """Keeps the shared connections: Django calls this after every request."""

    # --- beyond BaseCache, as django-redis has them --------------------------------
    def ttl(self, key, version=None):
        """Seconds left: None for no expiry, 0 for a missing key (django-redis's answers)."""
        left = self._store.ttl(self.make_key(key, version=version))
        if left is None:
            return None
        return 0 if left < 0 else int(left)

