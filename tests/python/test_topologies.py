"""The Python package and the Django backend on Redis over TLS, through Redis
Sentinel and on a Redis Cluster, with real servers: a redis-server with a TLS
port (certificates made by the openssl CLI at test time), a Sentinel group (a
master, a replica and three sentinels) and a 3-master Cluster (redis-cli
--cluster create). Entries are shared with django-redis's TLS and
SentinelClient settings in both directions, and with redis-py's RedisCluster."""

import os
import shutil
import subprocess
import time

import pytest

from conftest import RedisServer

MASTER = "mymaster"
SENTINEL_PASSWORD = "sentinel-s3cret"


# --- servers -------------------------------------------------------------------

def _openssl(directory, *args):
    subprocess.run(["openssl", *args], cwd=directory, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _make_certificates(directory):
    """A CA, a server certificate for 127.0.0.1 and localhost, and a client
    certificate, as tests/support/tls_certs.cc makes them. Paths by name."""
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(directory, "req", "-x509", *new_key, "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "30", "-subj", "/CN=aicache-python-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, san in (("server", "IP:127.0.0.1,DNS:localhost"), ("client", "DNS:client")):
        _openssl(directory, "req", "-new", *new_key, "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN={name}", "-addext",
                 f"subjectAltName={san}")
        _openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt",
                 "-CAkey", "ca.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", "30",
                 "-copy_extensions", "copy")
    return {name: os.path.join(str(directory), name)
            for name in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return _make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, certificates):
    server = RedisServer(tmp_path_factory.mktemp("redis-tls"),
                         tls=(certificates["server.crt"], certificates["server.key"],
                              certificates["ca.crt"]))
    server.start()
    yield server
    server.stop()


class SentinelGroup:
    """A master, its replica and three sentinels watching it as MASTER (with
    requirepass SENTINEL_PASSWORD), as tests/support/redis_sentinel_group.cc."""

    def __init__(self, factory):
        self.sentinels = []
        self.master = self.replica = None
        try:
            self._start(factory)
        except BaseException:
            self.stop()
            raise

    def _start(self, factory):
        self.master = RedisServer(factory.mktemp("master"))
        self.master.start()
        self.replica = RedisServer(factory.mktemp("replica"),
                                   extra_args=["--replicaof", "127.0.0.1", str(self.master.port)])
        self.replica.start()
        deadline = time.monotonic() + 10
        while self.replica.client().info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                pytest.fail("the replica did not sync")
            time.sleep(0.01)
        conf = (f"sentinel monitor {MASTER} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 2000\n"
                f"requirepass {SENTINEL_PASSWORD}\n"
                f"sentinel sentinel-pass {SENTINEL_PASSWORD}\n")
        for i in range(3):
            sentinel = RedisServer(factory.mktemp(f"sentinel{i}"), config_text=conf,
                                   sentinel=True)
            self.sentinels.append(sentinel)
            sentinel.start()

    @property
    def addresses(self):
        return [("127.0.0.1", s.port) for s in self.sentinels]

    def stop(self):
        for server in self.sentinels + [self.replica, self.master]:
            if server is not None:
                server.stop()


@pytest.fixture(scope="module")
def sentinel_group(tmp_path_factory):
    group = SentinelGroup(tmp_path_factory)
    yield group
    group.stop()


class Cluster:
    """Three masters, no replicas (tests/support/redis_cluster.cc has the
    fuller recipe)."""

    def __init__(self, factory):
        self.nodes = []
        try:
            for i in range(3):
                node = RedisServer(factory.mktemp(f"cluster{i}"), extra_args=[
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", "1000"])
                self.nodes.append(node)
                node.start()
            subprocess.run([shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                            *(f"127.0.0.1:{n.port}" for n in self.nodes),
                            "--cluster-replicas", "0", "--cluster-yes"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=30)
            deadline = time.monotonic() + 20
            while not all(n.client().cluster("info")["cluster_state"] == "ok"
                          for n in self.nodes):
                if time.monotonic() > deadline:
                    pytest.fail("the cluster did not reach cluster_state:ok")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    @property
    def seeds(self):
        return [f"127.0.0.1:{n.port}" for n in self.nodes]

    def flush(self):
        for node in self.nodes:
            node.client().flushall()

    def stop(self):
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    group = Cluster(tmp_path_factory)
    yield group
    group.stop()


# --- Django -----------------------------------------------------------------------

def _cache(backend, location, **options):
    return {"BACKEND": backend, "LOCATION": location, "KEY_PREFIX": "blbs_erp",
            "VERSION": 1, "TIMEOUT": 300, "OPTIONS": options}


AICACHE = "aicache.django.AicacheCache"
DJANGO_REDIS = "django_redis.cache.RedisCache"


@pytest.fixture(scope="module")
def caches(tls_server, sentinel_group, cluster, certificates):
    tls_url = f"rediss://127.0.0.1:{tls_server.tls_port}/0"
    # The ACL user and "ssl" as redis-py's Sentinel takes them (the default
    # user: the sentinels' requirepass is its password).
    sentinel_options = {"SENTINELS": sentinel_group.addresses,
                        "SENTINEL_KWARGS": {"password": SENTINEL_PASSWORD, "username": "default",
                                            "ssl": False}}
    settings = {
        "aicache_tls": _cache(AICACHE, tls_url, SERIALIZER="json", CONNECTION_POOL_KWARGS={
            "ssl_ca_certs": certificates["ca.crt"],
            "ssl_certfile": certificates["client.crt"],
            "ssl_keyfile": certificates["client.key"],
            "ssl_cert_reqs": "required"}),
        "aicache_tls_unverified": _cache(AICACHE, tls_url, CONNECTION_POOL_KWARGS={
            "ssl_cert_reqs": None}),
        "aicache_tls_untrusted": _cache(AICACHE, tls_url, IGNORE_EXCEPTIONS=False),
        "django_redis_tls": _cache(DJANGO_REDIS, tls_url,
                                   SERIALIZER="django_redis.serializers.json.JSONSerializer",
                                   CONNECTION_POOL_KWARGS={
                                       "ssl_ca_certs": certificates["ca.crt"]}),
        "aicache_sentinel": _cache(AICACHE, f"redis://{MASTER}/0", **sentinel_options),
        "django_redis_sentinel": _cache(
            DJANGO_REDIS, f"redis://{MASTER}/0",
            CLIENT_CLASS="django_redis.client.SentinelClient",
            CONNECTION_FACTORY="django_redis.pool.SentinelConnectionFactory",
            **sentinel_options),
        "aicache_cluster": _cache(AICACHE, f"redis://{cluster.seeds[0]}/0", SERIALIZER="json",
                                  CLUSTER_NODES=cluster.seeds),
    }
    import django
    from django.conf import settings as django_settings
    django_settings.configure(SECRET_KEY="aicache-tests-only", USE_TZ=True,
                              INSTALLED_APPS=[], DATABASES={},
                              CACHES={"default": _cache(AICACHE, ""), **settings})
    django.setup()
    from django.core.cache import caches as django_caches
    return django_caches


@pytest.fixture
def clean(tls_server, sentinel_group, cluster):
    tls_server.client().flushall()
    sentinel_group.master.client().flushall()
    cluster.flush()


def test_django_backend_over_tls(caches, clean, tls_server):
    cache = caches["aicache_tls"]
    cache.set("conversation", {"messages": ["hi"], "n": 1})
    assert cache.get("conversation") == {"messages": ["hi"], "n": 1}
    cache.set_many({"a": 1, "b": [2]})
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": [2]}
    assert cache.incr("a", 2) == 3
    # The entry is on the server, as Django names it (seen on its plain port).
    assert tls_server.client().get("blbs_erp:1:a") == b"3"
    assert cache.delete("b")
    assert cache.clear() >= 2
    assert cache.get("conversation") is None


def test_tls_without_verification_still_encrypts(caches, clean):
    cache = caches["aicache_tls_unverified"]
    cache.set("k", "v")
    assert cache.get("k") == "v"


def test_tls_refuses_a_server_it_cannot_verify(caches):
    import aicache
    # No CA given: the system's CAs do not know the test CA.
    with pytest.raises(aicache.Error) as raised:
        caches["aicache_tls_untrusted"].get("k")
    assert raised.value.code in ("config", "unavailable")
    assert "certificate" in raised.value.message


def test_django_redis_over_tls_shares_entries(caches, clean):
    ours, theirs = caches["aicache_tls"], caches["django_redis_tls"]
    theirs.set("from_django_redis", {"x": [1, "two"]})
    assert ours.get("from_django_redis") == {"x": [1, "two"]}
    ours.set("from_aicache", {"y": 3})
    assert theirs.get("from_aicache") == {"y": 3}


def test_django_backend_through_sentinel(caches, clean, sentinel_group):
    cache = caches["aicache_sentinel"]
    cache.set("token", "abc", timeout=60)
    assert cache.get("token") == "abc"
    assert 0 < cache.ttl("token") <= 60
    # Written to the master the sentinels name.
    assert sentinel_group.master.client().get("blbs_erp:1:token") is not None
    assert cache.delete("token")
    assert cache.get("token") is None


def test_django_redis_sentinel_client_shares_entries(caches, clean):
    from django.test import override_settings
    ours, theirs = caches["aicache_sentinel"], caches["django_redis_sentinel"]
    # django-redis 5.2 (Debian's) takes the factory from this global setting
    # only (OPTIONS["CONNECTION_FACTORY"] is 5.3's), read when the cache's
    # client is made: by the first call.
    with override_settings(
            DJANGO_REDIS_CONNECTION_FACTORY="django_redis.pool.SentinelConnectionFactory"):
        theirs.set("from_django_redis", [1, 2, 3])
    assert ours.get("from_django_redis") == [1, 2, 3]
    ours.set("from_aicache", {"pickled": True})
    assert theirs.get("from_aicache") == {"pickled": True}
    assert theirs.get_many(["from_aicache", "from_django_redis"]) == {
        "from_aicache": {"pickled": True}, "from_django_redis": [1, 2, 3]}


def test_django_backend_on_a_cluster(caches, clean, cluster):
    cache = caches["aicache_cluster"]
    entries = {f"conversation:{i}": {"turn": i} for i in range(60)}
    assert cache.set_many(entries) == []
    assert cache.get_many(list(entries) + ["missing"]) == entries
    # Spread over the masters by slot, under Django's keys.
    assert all(node.client().dbsize() > 0 for node in cluster.nodes)
    cache.set("counter", 1)
    assert cache.incr("counter", 41) == 42
    # Django's keys, as any Cluster client finds them.
    from redis.cluster import RedisCluster
    theirs = RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    assert theirs.get("blbs_erp:1:counter") == b"42"
    assert theirs.get("blbs_erp:1:conversation:7") == b'{"turn": 7}'
    theirs.close()
    assert cache.delete_many(["conversation:0", "conversation:1"]) is None
    assert cache.get("conversation:0") is None
    assert cache.clear() == 59
    assert sum(node.client().dbsize() for node in cluster.nodes) == 0


def test_django_options_are_checked():
    from django.core.exceptions import ImproperlyConfigured

    from aicache.django import AicacheCache
    bad = [
        ("redis://127.0.0.1/0", {"CONNECTION_POOL_KWARGS": {"ssl_cert_reqs": "sometimes"}}),
        ("redis://127.0.0.1/0", {"SENTINELS": "127.0.0.1:26379"}),
        ("redis://127.0.0.1/0", {"SENTINEL_KWARGS": {"password": "x"}}),
        ("unix:///tmp/redis.sock", {"SENTINELS": [("127.0.0.1", 26379)]}),
        ("memcached://127.0.0.1", {}),
        ("redis://127.0.0.1/0", {"CLUSTER_NODES": ["127.0.0.1:7000"],
                                 "SENTINELS": [("127.0.0.1", 26379)]}),
        ("unix:///tmp/redis.sock", {"CLUSTER_NODES": ["127.0.0.1:7000"]}),
        ("redis://127.0.0.1/0", {"READ_FROM_REPLICAS": True}),
        ("redis://mymaster/0", {"SENTINELS": [("127.0.0.1", 26379)],
                                "SENTINEL_KWARGS": {"ssl": "yes"}}),
        ("redis://127.0.0.1/0", {"CLUSTER_NODES": ["127.0.0.1:7000"], "READ_FROM_REPLICAS": 1}),
    ]
    for location, options in bad:
        with pytest.raises(ImproperlyConfigured):
            AicacheCache(location, {"OPTIONS": options})


# --- the Python API -----------------------------------------------------------------

def test_store_and_assistant_cache_over_tls(tls_server, certificates, clean):
    import aicache
    url = f"rediss://127.0.0.1:{tls_server.tls_port}/0"
    store = aicache.Store.redis(url, tls_ca_file=certificates["ca.crt"],
                                tls_cert_file=certificates["client.crt"],
                                tls_key_file=certificates["client.key"])
    store.set("raw", b"bytes", None)
    assert store.get("raw") == b"bytes"
    cache = aicache.AssistantCache(url=url, key_prefix="py", tls_ca_file=certificates["ca.crt"])
    cache.set_access_token("wechat", "wx1", "TOKEN")
    assert cache.get_access_token("wechat", "wx1") == "TOKEN"
    assert cache.backend == "redis"
    unverified = aicache.Store.redis(url, tls_verify=False)
    assert unverified.get("raw") == b"bytes"


def test_store_and_assistant_cache_through_sentinel(sentinel_group, clean):
    import aicache
    # "host:port" strings and (host, port) tuples alike.
    sentinels = [f"127.0.0.1:{sentinel_group.sentinels[0].port}",
                 *sentinel_group.addresses[1:]]
    store = aicache.Store.redis(f"redis://{MASTER}/0", sentinels=sentinels,
                                sentinel_master=MASTER, sentinel_password=SENTINEL_PASSWORD)
    store.set("k", b"v", 60)
    assert sentinel_group.master.client().get("k") == b"v"
    # No url: db 0 of the master the sentinels name.
    cache = aicache.AssistantCache(sentinels=sentinels, sentinel_master=MASTER,
                                   sentinel_password=SENTINEL_PASSWORD, key_prefix="py")
    cache.set("answer", 42)
    assert cache.get("answer") == 42
    assert sentinel_group.master.client().get("py:1:answer") == b"42"


def test_store_and_assistant_cache_on_a_cluster(cluster, clean):
    import aicache
    store = aicache.Store.redis("redis://127.0.0.1/0",
                                cluster_nodes=[("127.0.0.1", cluster.nodes[1].port)])
    store.set_many([(f"k{i}", b"%d" % i) for i in range(30)], None)
    assert store.get_many([f"k{i}" for i in range(30)]) == [b"%d" % i for i in range(30)]
    cache = aicache.AssistantCache(cluster_nodes=cluster.seeds, key_prefix="py")
    cache.set_access_token("wechat", "wx1", "TOKEN")
    assert cache.get_access_token("wechat", "wx1") == "TOKEN"
    assert cache.get_stats()["backend"] == "redis"
    # Reads from replicas: a written value shows up once replicated.
    replicas = aicache.Store.redis("redis://127.0.0.1/0", cluster_nodes=cluster.seeds,
                                   read_from_replicas=True)
    deadline = time.monotonic() + 10
    while replicas.get("k7") != b"7" and time.monotonic() < deadline:
        time.sleep(0.005)
    assert replicas.get("k7") == b"7"
    with pytest.raises(aicache.ConfigError, match="read_from_replicas"):
        aicache.Store.redis("redis://127.0.0.1/0", read_from_replicas=True)


def test_wrong_arguments_raise_config_error_naming_them():
    import aicache
    url = "redis://127.0.0.1:1/0"
    cases = [
        (dict(sentinels=[("127.0.0.1", 26379)]), "sentinel_master"),
        (dict(sentinel_master=MASTER), "sentinel_master"),
        (dict(sentinel_password="hunter2-secret"), "sentinel_password"),
        (dict(sentinels=[("127.0.0.1", 0)], sentinel_master=MASTER), "sentinels[0]"),
        (dict(sentinels=["a:1", ("b",)], sentinel_master=MASTER), "sentinels[1]"),
        (dict(sentinels=[("127.0.0.1", "26379")], sentinel_master=MASTER), "sentinels[0]"),
        (dict(sentinels=["127.0.0.1:notaport"], sentinel_master=MASTER), "sentinels[0]"),
        (dict(sentinels=42, sentinel_master=MASTER), "sentinels"),
        (dict(sentinels=[], sentinel_master=MASTER), "sentinels"),
        (dict(sentinels=[("127.0.0.1", 26379)], sentinel_master=MASTER,
              sentinel_password=b"hunter2-secret"), "sentinel_password"),
        (dict(tls_ca_file=42), "tls_ca_file"),
        (dict(tls_cert_file="/tmp/client.crt"), "tls_cert_file"),
        (dict(tls_key_file=""), "tls_key_file"),
        (dict(cluster_nodes=["127.0.0.1:notaport"]), "cluster_nodes[0]"),
        (dict(cluster_nodes=[("127.0.0.1", 70000)]), "cluster_nodes[0]"),
        (dict(cluster_nodes=["127.0.0.1:7000"], sentinels=["127.0.0.1:26379"],
              sentinel_master=MASTER), "cluster_nodes"),
        (dict(sentinel_username="app"), "sentinel_username"),
        (dict(cluster_nodes=["127.0.0.1:7000"], read_from_replicas="no"), "read_from_replicas"),
        (dict(sentinel_tls=True), "sentinel_tls"),
        (dict(sentinels=[("127.0.0.1", 26379)], sentinel_master=MASTER, sentinel_tls="yes"),
         "sentinel_tls"),
    ]
    for kwargs, name in cases:
        for make in (lambda: aicache.Store.redis(url, **kwargs),
                     lambda: aicache.AssistantCache(url=url, **kwargs)):
            with pytest.raises(aicache.ConfigError) as raised:
                make()
            assert name in raised.value.message, (kwargs, raised.value.message)
            assert "hunter2" not in str(raised.value)
    # TLS files are for rediss:// only: never a silent plain connection.
    with pytest.raises(aicache.ConfigError):
        aicache.Store.redis(url, tls_ca_file="/etc/ssl/certs/ca-certificates.crt")
    with pytest.raises(aicache.ConfigError) as raised:
        aicache.AssistantCache(tls_ca_file="/etc/ssl/certs/ca-certificates.crt")
    assert "rediss://" in raised.value.message


def test_from_config_through_sentinel(sentinel_group, clean, clean_env, monkeypatch):
    import aicache
    monkeypatch.setenv("REDIS_SENTINELS",
                       ",".join(f"{h}:{p}" for h, p in sentinel_group.addresses))
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", MASTER)
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", SENTINEL_PASSWORD)
    monkeypatch.setenv("AICACHE_KEY_PREFIX", "cfg")
    cache = aicache.AssistantCache.from_config()
    assert cache.backend == "redis"
    cache.set_conversation("c1", {"turns": 2})
    assert cache.get_conversation("c1") == {"turns": 2}
    assert sentinel_group.master.client().exists("cfg:1:ai_assistant:conversation:c1")


def test_from_config_over_tls(tls_server, certificates, clean, clean_env, monkeypatch):
    import aicache
    monkeypatch.setenv("REDIS_URL", f"rediss://127.0.0.1:{tls_server.tls_port}/0")
    monkeypatch.setenv("REDIS_TLS_CA_FILE", certificates["ca.crt"])
    monkeypatch.setenv("AICACHE_KEY_PREFIX", "cfg")
    cache = aicache.AssistantCache.from_config()
    cache.set_ai_config("u1", {"model": "m"})
    assert cache.get_ai_config("u1") == {"model": "m"}
    assert tls_server.client().exists("cfg:1:ai_assistant:ai_config:u1")
