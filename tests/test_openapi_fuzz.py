"""Schemathesis over ``/openapi.json``: every documented operation answered as documented
(statuses, content types, bodies, headers, ``Allow`` on 405) and never a 5xx (issue 13).

Bounded: a few examples per operation, about 250 cases, on a server of the module's own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.support.live_server import LiveServer, live_servers

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    ignored_auth,
]
"""Every check that holds for any request. Left out: positive_data_acceptance (valid data
about sessions that do not exist is rightly refused with 404) and the stateful ones
(use_after_free, ensure_resource_availability, object_level_authorization), which need
links between operations the document does not declare."""


@pytest.fixture(scope="module")
def fuzzed_server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_servers(redis_url, tmp_path_factory.mktemp("fuzz")) as start:
        yield start(VSTUDIO_LOGIN_FAILURES_PER_USER="1000")


REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
"""How invalid data may be refused: schemathesis's defaults, and 413 for a body over the message
limit (a maximum the JSON schema cannot state)."""


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: LiveServer) -> schemathesis.BaseSchema:
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}}
    )
    return schemathesis.openapi.from_url(fuzzed_server.base_url + "/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_its_openapi_document_says(
    case: schemathesis.Case, fuzzed_server: LiveServer
) -> None:
    token = fuzzed_server.token("fuzzer", "viewer")
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


def test_every_api_route_and_status_is_documented() -> None:
    from config import BrokerSettings, ServerSettings
    from server.app import build_app
    from server.http.openapi import openapi_document

    app = build_app(ServerSettings(), BrokerSettings(), "redis://127.0.0.1:1", "s" * 40)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.method not in ("HEAD", "*")
        and route.resource.canonical.startswith(("/v1/", "/healthz", "/readyz", "/metrics"))
    }
    document = openapi_document()
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert served - documented == set()  # every route, the polls and tips reads among them
    assert documented - served == set()
    paths = document["paths"]
    assert "201" in paths["/v1/vstudio/sessions"]["post"]["responses"]
    view = paths["/v1/vstudio/sessions/{sessionId}"]["get"]["responses"]["200"]
    assert "viewerCount" in str(view)
