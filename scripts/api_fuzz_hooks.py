"""schemathesis hooks of scripts/api-fuzz.sh (loaded through SCHEMATHESIS_HOOKS).

`error_body_shape`: ARCHITECTURE.md's binding error shape, on every error response,
documented or not (schemathesis's schema check only sees the statuses the document
names, so a router's own 404/405 or an extractor's rejection would slip past it):
`Content-Type: application/json` and a body `{"error": "<snake_case>", "message": "..."}`.
"""

import json
import re

import schemathesis

SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@schemathesis.check
def error_body_shape(ctx, response, case):
    """Every 4xx/5xx is JSON {"error": "<snake_case>", "message": "<text>"}."""
    if response.status_code < 400:
        return None
    if case.method.upper() == "HEAD":
        # No body to check; the headers must still say JSON.
        content = b""
    else:
        content = response.content
    content_type = ",".join(response.headers.get("content-type", []))
    if not content_type.startswith("application/json"):
        raise AssertionError(
            f"{response.status_code} error with Content-Type {content_type!r}, "
            f"not application/json: {content[:200]!r}"
        )
    if case.method.upper() == "HEAD":
        return None
    try:
        body = json.loads(content)
    except ValueError:
        raise AssertionError(
            f"{response.status_code} error body is not JSON: {content[:200]!r}"
        ) from None
    if not isinstance(body, dict):
        raise AssertionError(f"{response.status_code} error body is not an object: {body!r}")
    code, message = body.get("error"), body.get("message")
    if not isinstance(code, str) or not SNAKE_CASE.match(code):
        raise AssertionError(
            f"{response.status_code} error body has no snake_case `error`: {body!r}"
        )
    if not isinstance(message, str) or not message:
        raise AssertionError(f"{response.status_code} error body has no `message`: {body!r}")
    return None
