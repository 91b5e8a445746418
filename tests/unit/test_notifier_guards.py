"""The notifier's guards that need no server: the per-caller token bucket, which delivery
failures are permanent (dead letter at once) and which are retried, and start-up errors
that never echo a Redis password."""

from __future__ import annotations

import pytest

from jiancha.notifier.mail import EmailChannel, SmtpServer
from jiancha.notifier.ratelimit import TokenBucket, retry_after
from jiancha.notifier.tokens import bearer, parse_tokens
from jiancha.notifier.types import DeliveryError, EmailConfig
from jiancha.notifier.webhook import check_url
from jiancha.settings import NotifierSettings, SettingsError, mask_url


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take("a") for _ in range(3)] == [0, 0, 0]
    wait = bucket.take("a")
    assert wait == pytest.approx(0.5) and retry_after(wait) == "1"
    assert bucket.take("b") == 0  # each caller its own bucket
    clock.now += 0.5
    assert bucket.take("a") == 0 and bucket.take("a") > 0
    clock.now += 100  # refills to the burst, no further
    assert [bucket.take("a") == 0 for _ in range(4)] == [True, True, True, False]


def test_token_bucket_table_stays_bounded() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=2, clock=clock, max_callers=100)
    for i in range(1000):
        bucket.take(f"peer:{i}")
        clock.now += 0.001
    assert len(bucket._buckets) <= 100
    assert bucket.take("peer:999") == 0 and bucket.take("peer:999") > 0  # the recent one is kept
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)


def test_bearer_header() -> None:
    tokens = parse_tokens({"tokens": [{"name": "b", "role": "bureau", "token": "bureau-token"}]})
    assert bearer(tokens, "Bearer bureau-token").name == "b"  # type: ignore[union-attr]
    assert bearer(tokens, "bearer  bureau-token ") is not None
    for header in ("", "Bearer", "Basic bureau-token", "Bearer other", "Bearer \udcff\ud800"):
        assert bearer(tokens, header) is None


@pytest.mark.parametrize("url", ["http://", "https://", "http://a b/x", "http://a:xx/", "ftp://host/x",
                                 "http://[::1/", "http://host/\nx", "not a url", ""])
def test_a_malformed_webhook_url_is_a_permanent_failure(url: str) -> None:
    with pytest.raises(DeliveryError) as failed:
        check_url(url)
    assert failed.value.permanent and "not a valid http(s) URL" in str(failed.value)


def test_a_good_webhook_url_passes() -> None:
    check_url("https://oa.gongan.example/hook?d=gongan")
    check_url("http://127.0.0.1:8080/hook")


def test_an_email_address_that_is_not_one_is_a_permanent_failure() -> None:
    server = SmtpServer("127.0.0.1")
    EmailChannel(EmailConfig(type="email", to=["lianluo@gongan.example"]), server)
    for address in ("", "nobody", "a@b\nBcc: x@y", "a b@c", "a@b,c@d"):
        with pytest.raises(DeliveryError) as failed:
            EmailChannel(EmailConfig(type="email", to=[address]), server)
        assert failed.value.permanent


def test_a_transient_failure_is_not_permanent_by_default() -> None:
    assert not DeliveryError("connection refused").permanent


@pytest.mark.parametrize("url", ["redis://:s3cret-pw@127.0.0.1:notaport/0",
                                 "http://default:s3cret-pw@127.0.0.1:6379/0",
                                 "redis://user:s3cret-pw@[::1/0"])
def test_a_rejected_redis_url_is_never_echoed_with_its_password(url: str) -> None:
    with pytest.raises(SettingsError) as failed:
        NotifierSettings.load(redis_url=url)
    message = str(failed.value)
    assert "JIANCHA_REDIS_URL" in message and "s3cret-pw" not in message
    assert "***@" in message


def test_mask_url() -> None:
    assert mask_url("redis://:pw@host:6379/0") == "redis://***@host:6379/0"
    assert mask_url("rediss://user:p@ss@host:6380") == "rediss://***@host:6380"
    assert mask_url("redis://host:6379/0") == "redis://host:6379/0"


def test_the_alerts_cli_names_an_unreachable_redis_without_its_password(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from jiancha.cli import app
    from jiancha.embedded import free_port

    monkeypatch.setenv("JIANCHA_REDIS_URL", f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0")
    done = CliRunner().invoke(app, ["alerts", "list"])
    assert done.exit_code == 2, done.output
    assert "cannot reach Redis at redis://***@127.0.0.1:" in done.output
    assert "s3cret-pw" not in done.output


@pytest.mark.parametrize("duration", ["100000000d", "91d", "0s"])
def test_the_alerts_cli_refuses_a_silence_beyond_the_maximum(duration: str) -> None:
    from typer.testing import CliRunner

    from jiancha.cli import app

    done = CliRunner().invoke(app, ["alerts", "silence", "--department", "gongan", "--reason", "r",
                                    "--for", duration])
    assert done.exit_code == 2, done.output
    assert "--for: from 1 second to 90 days" in done.output
