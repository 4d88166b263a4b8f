"""``redact_url``: every credential form, for every broker, in one table.

Each row is (URL as configured, URL as shown). The secrets in the table all contain
"S3CRET" (or are listed in ``_ALSO_SECRET``), so a last test can check that none
survives, whatever the expected column says.
"""

from __future__ import annotations

import pytest

from conveyor.brokers import redact_secrets, redact_url, shown_url

CASES: list[tuple[str, str]] = [
    # nothing to hide: unchanged, byte for byte
    ("memory://", "memory://"),
    ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    ("redis://localhost:6379/0?prefix=app1", "redis://localhost:6379/0?prefix=app1"),
    ("rediss://h:6380/0?ssl_cert_reqs=none", "rediss://h:6380/0?ssl_cert_reqs=none"),
    ("redis://h/0?ssl_keyfile=/etc/k.pem", "redis://h/0?ssl_keyfile=/etc/k.pem"),
    ("sqlite:///conveyor.db", "sqlite:///conveyor.db"),
    ("sqlite:////srv/app/a@b/conveyor.db", "sqlite:////srv/app/a@b/conveyor.db"),
    ("postgresql://db.internal/conveyor", "postgresql://db.internal/conveyor"),
    ("nats://a:4222,b:4222", "nats://a:4222,b:4222"),
    ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
    ("", ""),
    ("not a url", "not a url"),
    # a user name alone is a name where the scheme says so, and kept
    ("redis://alice@h:6379/0", "redis://alice@h:6379/0"),
    ("amqp://guest@rabbit:5672/", "amqp://guest@rabbit:5672/"),
    ("postgresql://conveyor@db/conveyor", "postgresql://conveyor@db/conveyor"),
    # userinfo passwords
    ("redis://user:S3CRET@host:6379/0", "redis://user:***@host:6379/0"),
    ("redis://:S3CRET@host:6379/0", "redis://:***@host:6379/0"),
    ("rediss://default:S3CRET@h:6380/0?prefix=p", "rediss://default:***@h:6380/0?prefix=p"),
    ("amqp://user:S3CRET@rabbit:5672/vhost", "amqp://user:***@rabbit:5672/vhost"),
    ("amqps://user:S3CRET@rabbit/", "amqps://user:***@rabbit/"),
    ("postgresql://app:S3CRET@db:5432/conveyor", "postgresql://app:***@db:5432/conveyor"),
    ("postgres://app:S3CRET@db/conveyor", "postgres://app:***@db/conveyor"),
    ("nats://user:S3CRET@nats:4222", "nats://user:***@nats:4222"),
    ("REDIS://U:S3CRET@H/0", "REDIS://U:***@H/0"),
    ("unix://:S3CRET@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
    # percent-encoded and unencoded special characters in the password
    ("redis://:S3CRET%40x%2Fy@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://:S3CRET@at@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://:S3CRET/slash@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://:S3CRET#hash@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://:S3CRET?q@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://:Zm9v/S3CRET+cXV4==@h:6379/0", "redis://:***@h:6379/0"),
    ("redis://u:1234/S3CRET@h/0", "redis://u:***@h/0"),
    # a lone token in the userinfo (NATS, and any scheme not known to put a name there)
    ("nats://S3CRET@nats:4222", "nats://***@nats:4222"),
    ("tls://S3CRET@nats:4222", "tls://***@nats:4222"),
    ("kafka://S3CRET@broker:9092", "kafka://***@broker:9092"),
    # query parameters that carry credentials, any case, any scheme
    ("redis://h:6379/0?password=S3CRET", "redis://h:6379/0?password=***"),
    (
        "redis://h:6379/0?prefix=app&password=S3CRET&db=1",
        "redis://h:6379/0?prefix=app&password=***&db=1",
    ),
    ("redis://h/0?PASSWORD=S3CRET", "redis://h/0?PASSWORD=***"),
    ("redis://h/0?Password=S3CRET", "redis://h/0?Password=***"),
    # a value runs to the next '&', as parse_qs reads it: ';' and '#' may be in a password
    ("redis://h/0?password=S3C;RET;x&db=1", "redis://h/0?password=***&db=1"),
    ("redis://h/0?password=S3C#RET&db=1", "redis://h/0?password=***&db=1"),
    ("redis://h/0?password=S3C&RET&db=1", "redis://h/0?password=***&db=1"),
    ("redis://h/0?x=1;password=S3CRET", "redis://h/0?x=1;password=***"),
    ("redis://h/0?pass%77ord=S3CRET", "redis://h/0?pass%77ord=***"),
    ("redis://h/0?username=bob&password=S3CRET", "redis://h/0?username=bob&password=***"),
    ("redis://u:S3CRET@h/0?password=S3CRET", "redis://u:***@h/0?password=***"),
    ("rediss://h/0?ssl_password=S3CRET", "rediss://h/0?ssl_password=***"),
    (
        "redis+sentinel://h1:26379,h2:26379/mymaster?sentinel_password=S3CRET",
        "redis+sentinel://h1:26379,h2:26379/mymaster?sentinel_password=***",
    ),
    (
        "redis+sentinel://:S3CRET@h1:26379,h2:26379/mymaster",
        "redis+sentinel://:***@h1:26379,h2:26379/mymaster",
    ),
    (
        "redis+cluster://h1:7000,h2:7001?password=S3CRET",
        "redis+cluster://h1:7000,h2:7001?password=***",
    ),
    ("amqp://rabbit/?auth=S3CRET", "amqp://rabbit/?auth=***"),
    ("kafka://b:9092?sasl_password=S3CRET", "kafka://b:9092?sasl_password=***"),
    ("nats://nats:4222?token=S3CRET", "nats://nats:4222?token=***"),
    ("nats://nats:4222?access_token=S3CRET", "nats://nats:4222?access_token=***"),
    ("x://h?api_key=S3CRET&apikey=S3CRET", "x://h?api_key=***&apikey=***"),
    ("x://h?key=S3CRET&prefix=keep", "x://h?key=***&prefix=keep"),
    ("x://h?secret=S3CRET&client_secret=S3CRET", "x://h?secret=***&client_secret=***"),
    ("x://h?passwd=S3CRET&pwd=S3CRET&pass=S3CRET", "x://h?passwd=***&pwd=***&pass=***"),
    ("x://h?credentials=S3CRET&sig=S3CRET", "x://h?credentials=***&sig=***"),
    ("x://h?authToken=S3CRET&AccessKey=S3CRET", "x://h?authToken=***&AccessKey=***"),
    ("x://h?password=", "x://h?password=***"),
    ("postgresql://db/conveyor?password=S3CRET", "postgresql://db/conveyor?password=***"),
    ("postgresql://app@db/conveyor?password=S3CRET", "postgresql://app@db/conveyor?password=***"),
    ("sqlite:///conveyor.db?password=S3CRET", "sqlite:///conveyor.db?password=***"),
    ("redis://h/0#password=S3CRET", "redis://h/0#password=***"),
    # libpq key/value strings are not URLs, but carry passwords the same way
    ("host=db password=S3CRET dbname=x", "host=db password=*** dbname=x"),
    ("host=db password='S3CRET with spaces' dbname=x", "host=db password=*** dbname=x"),
    # several hosts, several URLs: never a crash, every part redacted
    ("nats://u:S3CRET@a:4222,b:4222", "nats://u:***@a:4222,b:4222"),
    (
        "nats://S3CRET@a:4222,nats://S3CRET@b:4222",
        "nats://***@a:4222,nats://***@b:4222",
    ),
    (
        "nats://u:S3CRET@a:4222, nats://u:S3CRET@b:4222",
        "nats://u:***@a:4222, nats://u:***@b:4222",
    ),
    ("redis://:S3CRET@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
    ("redis://:S3CRET@[::1/0", "redis://:***@[::1/0"),  # invalid IPv6: no ValueError
    ("redis://:S3CRET@h:notaport/0", "redis://:***@h:notaport/0"),
    # a URL inside a parameter, percent-encoded (amqp's ?results=): its secrets too
    (
        "amqp://u:S3CRET@h/?prefix=a&results=redis%3A%2F%2F%3AS3CRET%40r%3A6379%2F0",
        "amqp://u:***@h/?prefix=a&results=redis%3A%2F%2F%3A***%40r%3A6379%2F0",
    ),
    (
        "amqp://h/?results=redis%3A%2F%2Fr%2F0%3Fpassword%3DS3CRET&prefix=a",
        "amqp://h/?results=redis%3A%2F%2Fr%2F0%3Fpassword%3D***&prefix=a",
    ),
]

_ALSO_SECRET = ("Zm9v", "cXV4", "S3C", "RET")  # parts of passwords above


@pytest.mark.parametrize(("url", "shown"), CASES, ids=[c[0] or "empty" for c in CASES])
def test_redact_url_hides_every_credential_form(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_no_secret_of_the_table_survives_redaction() -> None:
    for url, _ in CASES:
        out = redact_url(url)
        assert "S3CRET" not in out, url
        assert not any(part in out for part in _ALSO_SECRET), url


def test_redaction_is_idempotent() -> None:
    for _, shown in CASES:
        assert redact_url(shown) == shown


def test_shown_url_redacts_too_sqlite_paths_included() -> None:
    assert shown_url("redis://h:6379/0?password=S3CRET") == "redis://h:6379/0?password=***"
    shown = shown_url("sqlite:///conveyor.db?password=S3CRET")
    assert shown.startswith("sqlite:////") and "S3CRET" not in shown


# (an error message about the URL, the URL, the message as shown): a parser that cut a
# password at an unencoded '/', '#' or '?' quotes a piece of it, as a port or a host
MESSAGES: list[tuple[str, str, str]] = [
    (
        "Port could not be cast to integer value as 'Zm9v'",
        "redis://:Zm9v/YmFy@h:6379/0",
        "Port could not be cast to integer value as '***'",
    ),
    (
        "Error 111 connecting to localhost:12345. Connect call failed ('127.0.0.1', 12345)",
        "redis://:12345/YmFy@127.0.0.1:1/0",
        "Error 111 connecting to localhost:***. Connect call failed ('127.0.0.1', ***)",
    ),
    ("bad password p@ss w0rd", "redis://:p%40ss%20w0rd@h/0", "bad password ***"),
    ("AUTH S3CRET failed", "redis://h/0?password=S3CRET", "AUTH *** failed"),
    ("token S3CRET refused", "nats://S3CRET@h:4222", "token *** refused"),
    ("Error 111 connecting to h:63", "redis://:S3CRET@h:63/0", "Error 111 connecting to h:63"),
    ("no secret, no change", "redis://h:6379/0", "no secret, no change"),
]


@pytest.mark.parametrize(("text", "url", "shown"), MESSAGES)
def test_redact_secrets_hides_the_url_credentials_in_a_message(
    text: str, url: str, shown: str
) -> None:
    assert redact_secrets(text, url) == shown
