"""aicache.TokenManager against the fake WeChat platform (fake_platform.py):
one fetch per refresh, invalidation, errors with the platform's code and
never the secret, the GIL released while fetching."""

import threading
import time

import pytest

import aicache
from conftest import APP_ID, SECRET, write_config


@pytest.fixture(params=["memory", "redis"])
def store_url(request):
    return None if request.param == "memory" else request.getfixturevalue("redis_url")


@pytest.fixture
def tokens(clean_env, fake_platform, store_url):
    path = write_config(clean_env, redis_url=store_url, base_url=fake_platform.base_url)
    # No background refresher: each test decides when the platform is called.
    manager = aicache.TokenManager.from_config(path, refresh_interval=0)
    yield manager
    manager.close()


def test_the_background_refresher_fetches_before_anyone_asks(clean_env, fake_platform,
                                                             store_url):
    path = write_config(clean_env, redis_url=store_url, base_url=fake_platform.base_url)
    manager = aicache.TokenManager.from_config(path, refresh_interval=0.1)
    deadline = time.monotonic() + 10
    while fake_platform.fetches == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_platform.fetches == 1
    manager.close()
    assert manager.access_token("wechat", APP_ID) == f"token-1-{APP_ID}"
    assert fake_platform.fetches == 1


def test_one_fetch_then_served_from_the_store(tokens, fake_platform):
    token = tokens.access_token("wechat", APP_ID)
    assert token == f"token-1-{APP_ID}"
    assert tokens.access_token("wechat", APP_ID) == token
    assert fake_platform.fetches == 1
    full = tokens.token("wechat", APP_ID)
    assert full["access_token"] == token and 7000 < full["expires_in"] <= 7200
    (app,) = tokens.stats()
    assert app["channel"] == "wechat" and app["app_id"] == APP_ID
    assert app["fetches"] == 1 and app["hits"] >= 1
    assert SECRET not in repr(app)


def test_the_token_is_where_the_django_system_reads_it(clean_env, fake_platform, redis_url,
                                                       redis_server):
    path = write_config(clean_env, redis_url=redis_url, base_url=fake_platform.base_url)
    manager = aicache.TokenManager.from_config(path, refresh_interval=0)
    token = manager.access_token("wechat", APP_ID)
    cache = aicache.AssistantCache(url=redis_url)
    assert cache.get_access_token("wechat", APP_ID) == token
    assert redis_server.client().get(f":1:ai_assistant:access_token:wechat:{APP_ID}") == \
        f'"{token}"'.encode()


def test_invalidate_then_fetch_again(tokens, fake_platform):
    first = tokens.access_token("wechat", APP_ID)
    assert tokens.invalidate("wechat", APP_ID, "not-the-stored-token") is False
    assert tokens.access_token("wechat", APP_ID) == first
    assert tokens.invalidate("wechat", APP_ID, first) is True
    second = tokens.access_token("wechat", APP_ID)
    assert second != first
    assert fake_platform.fetches == 2


def test_refresh(tokens, fake_platform):
    first = tokens.access_token("wechat", APP_ID)
    assert tokens.refresh("wechat", APP_ID) != first
    assert fake_platform.fetches == 2


def test_threads_share_one_fetch(tokens, fake_platform):
    fake_platform.configure(delay=0.3)
    results = []
    threads = [threading.Thread(target=lambda: results.append(tokens.access_token("wechat", APP_ID)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 8 and len(set(results)) == 1
    assert fake_platform.fetches == 1


def test_the_gil_is_released_while_fetching(clean_env, fake_platform, store_url):
    # No background refresher: the fetch must be the test thread's own.
    path = write_config(clean_env, redis_url=store_url, base_url=fake_platform.base_url)
    tokens = aicache.TokenManager.from_config(path, refresh_interval=0)
    fake_platform.configure(delay=2.0)
    fetcher = threading.Thread(target=tokens.access_token, args=("wechat", APP_ID))
    fetcher.start()
    time.sleep(0.1)
    start = time.monotonic()
    for _ in range(20):
        time.sleep(0.002)  # needs the GIL back after each sleep
    elapsed = time.monotonic() - start
    still_fetching = fetcher.is_alive()
    fetcher.join(timeout=30)
    assert still_fetching
    assert elapsed < 1.0, f"the main thread was held up {elapsed:.2f} s"


def test_a_bad_secret_is_a_config_error_with_the_platform_code(clean_env, fake_platform,
                                                               store_url):
    wrong = "wrong-secret-value"
    path = write_config(clean_env, redis_url=store_url, base_url=fake_platform.base_url,
                        secret=wrong)
    manager = aicache.TokenManager.from_config(path, refresh_interval=0)
    with pytest.raises(aicache.ConfigError) as e:
        manager.access_token("wechat", APP_ID)
    assert e.value.code == "config"
    assert e.value.platform_code == "40125"
    assert "invalid appsecret" in e.value.message
    assert wrong not in str(e.value) and wrong not in e.value.message


def test_a_quota_error_is_an_upstream_error(tokens, fake_platform):
    fake_platform.configure(errcode=45009, errmsg="reach max api daily quota limit")
    with pytest.raises(aicache.UpstreamError) as e:
        tokens.access_token("wechat", APP_ID)
    assert e.value.platform_code == "45009"
    assert "daily quota" in e.value.message
    assert SECRET not in str(e.value)


def test_an_unknown_app_is_not_found(tokens):
    with pytest.raises(aicache.NotFoundError):
        tokens.access_token("wechat", "wx_not_configured")


def test_config_errors(clean_env):
    path = clean_env / "aicache.toml"
    path.write_text('[[apps]]\nchannel = "wechat"\napp_id = "wx1"\nsecret_env = "NOPE_SECRET"\n')
    with pytest.raises(aicache.ConfigError):
        aicache.TokenManager.from_config(str(path))
