"""Which URLs name a Redis Cluster, and what the doctor asks of one (no server needed)."""

from __future__ import annotations

import pytest

from broker.connection import is_cluster_url, redact_url
from vstudio_cli.doctor import check_version


@pytest.mark.parametrize(
    ("url", "cluster"),
    [
        ("redis+cluster://10.0.0.1:7000", True),
        ("rediss+cluster://user:pw@node.example:6380/0", True),
        ("redis://127.0.0.1:6379", False),
        ("rediss://127.0.0.1:6380", False),
        ("unix:///run/redis.sock", False),
    ],
)
def test_the_scheme_says_whether_a_url_names_a_cluster(url: str, cluster: bool) -> None:
    assert is_cluster_url(url) is cluster


def test_a_cluster_url_is_redacted_like_any_other() -> None:
    assert redact_url("redis+cluster://app:s3cret@10.0.0.1:7000") == (
        "redis+cluster://app:***@10.0.0.1:7000"
    )


def test_the_doctor_wants_redis_7_for_a_cluster_and_6_2_for_one_server() -> None:
    assert check_version("Redis", "6.2.14", "redis+cluster://h:7000").status == "fail"
    assert check_version("Redis", "7.0.15", "redis+cluster://h:7000").status == "ok"
    assert check_version("Redis", "6.2.14", "redis://h:6379").status == "ok"
    assert check_version("Valkey", "8.0.1", "redis+cluster://h:7000").status == "ok"
