"""Fixtures of the Python tests: a real redis-server on a free loopback port,
the fake token platform (fake_platform.py) and a clean configuration
environment. Run by ctest (python/CMakeLists.txt registers each suite)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

# Variables load_config reads: a developer's shell must not change the tests.
CONFIG_VARIABLES = [
    "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB",
    "AICACHE_KEY_PREFIX", "AICACHE_KEY_VERSION", "AICACHE_DEFAULT_TIMEOUT",
    "AICACHE_MEMORY_MAX_BYTES", "AICACHE_MEMORY_MAX_ENTRIES", "AICACHE_CONFIG",
    "AICACHE_SERVER", "AICACHE_API_TOKEN",
    "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD", "REDIS_CLUSTER_NODES",
    "REDIS_SENTINEL_USERNAME", "REDIS_SENTINEL_TLS", "REDIS_READ_FROM_REPLICAS",
    "REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE", "REDIS_TLS_VERIFY",
    "REDIS_POOL_SIZE", "REDIS_CONNECT_TIMEOUT_MS", "REDIS_COMMAND_TIMEOUT_MS",
]


def _redis_server_binary():
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if os.path.exists(candidate):
            return candidate
    pytest.fail("redis-server not found (scripts/install-deps.sh installs redis-server)")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server (or, with config_text and sentinel=True, a sentinel) on
    free loopback ports. tls: (cert, key, ca) files, for a TLS port
    (tls_port) beside the plain one; extra_args: more command-line options."""

    def __init__(self, directory, extra_args=(), config_text=None, sentinel=False, tls=None):
        self.directory = directory
        self.extra_args = list(extra_args)
        self.config_text = config_text
        self.sentinel = sentinel
        self.tls = tls
        self.process = None
        self.port = None
        self.tls_port = None

    def _args(self, port):
        args = [_redis_server_binary()]
        if self.config_text is not None:
            # Written once: a sentinel rewrites it with what it learns.
            conf = os.path.join(str(self.directory), "redis.conf")
            if not os.path.exists(conf):
                with open(conf, "w") as f:
                    f.write(self.config_text)
            args.append(conf)
        if self.sentinel:
            args.append("--sentinel")
        args += ["--port", str(port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.directory),
                 "--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning"]
        if self.tls:
            cert, key, ca = self.tls
            self.tls_port = _free_port()
            args += ["--tls-port", str(self.tls_port), "--tls-cert-file", cert,
                     "--tls-key-file", key, "--tls-ca-cert-file", ca,
                     "--tls-auth-clients", "optional"]
        return args + self.extra_args

    def start(self):
        for _ in range(20):
            port = _free_port()
            self.process = subprocess.Popen(
                self._args(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                        s.sendall(b"PING\r\n")
                        # A server with requirepass answers NOAUTH: up too.
                        if s.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                            self.port = port
                            return
                except OSError:
                    time.sleep(0.02)
            self.stop()  # lost the port to another process: try another
        pytest.fail("redis-server did not start")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, db=0):
        import redis  # python3-redis, a dependency of python3-django-redis
        return redis.Redis(host="127.0.0.1", port=self.port, db=db)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """A Redis URL on an empty database."""
    redis_server.client().flushall()
    return redis_server.url


class FakePlatform:
    def __init__(self):
        self.process = subprocess.Popen([sys.executable, os.path.join(HERE, "fake_platform.py")],
                                        stdout=subprocess.PIPE, text=True)
        self.port = int(self.process.stdout.readline())
        self.base_url = f"http://127.0.0.1:{self.port}"

    def _call(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        with urllib.request.urlopen(self.base_url + path, data=data, timeout=10) as r:
            return json.loads(r.read())

    def configure(self, **settings):
        self._call("/_control/config", settings)

    def reset(self):
        self.configure(reset=True, delay=0.0, errcode=0, errmsg="", expires_in=7200,
                       secret="s3cret-value")

    @property
    def fetches(self):
        return self._call("/_control/stats")["fetches"]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def fake_platform_server():
    platform = FakePlatform()
    yield platform
    platform.stop()


@pytest.fixture
def fake_platform(fake_platform_server):
    fake_platform_server.reset()
    return fake_platform_server


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No configuration from the environment or the working directory."""
    for name in CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


APP_ID = "wx0123456789abcdef"
SECRET = "s3cret-value"


def write_config(directory, redis_url=None, base_url=None, secret=SECRET, key_prefix="",
                 extra=""):
    """An aicache.toml in `directory`; its path."""
    lines = ["[store]"]
    if redis_url:
        lines.append(f'url = "{redis_url}"')
    lines.append(f'key_prefix = "{key_prefix}"')
    if base_url:
        lines += ["", "[tokens]", "min_refresh_interval = 0", "", "[[apps]]",
                  'channel = "wechat"', f'app_id = "{APP_ID}"', f'secret = "{secret}"',
                  'api = "plain"', f'base_url = "{base_url}"']
    path = os.path.join(str(directory), "aicache.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n" + extra)
    os.chmod(path, 0o600)
    return path
