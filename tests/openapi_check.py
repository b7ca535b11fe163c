"""Validate real responses against the service's own OpenAPI document (jsonschema, 2020-12)."""

import json

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

JSON = "application/json"
SPEC_URI = "urn:fillmask:openapi"
GENERIC_ERRORS = (403, 404, 405)


class SpecChecker:
    """Looks up the documented response for a path, method and status and validates a body."""

    def __init__(self, spec):
        self.spec = spec
        resource = Resource(contents=spec, specification=DRAFT202012)
        self.registry = Registry().with_resource(SPEC_URI, resource)

    def response_pointer(self, path, method, status):
        """JSON pointer of the documented response (the error components for 404/405)."""
        operations = self.spec["paths"].get(path)
        responses = (operations or {}).get(method.lower(), {}).get("responses", {})
        if str(status) in responses:
            entry = responses[str(status)]
            if "$ref" in entry:
                return entry["$ref"]
            return "#/paths/" + _escape(path) + f"/{method.lower()}/responses/{status}"
        # Unknown paths, undocumented methods and CORS preflights: the generic error components.
        assert status in GENERIC_ERRORS and method.lower() not in (operations or {}), (
            f"{method} {path} answered {status}, which the spec does not document"
        )
        return f"#/components/responses/Error{status}"

    def validate(self, path, method, status, content_type, body_bytes):
        """Raise AssertionError unless the body is JSON matching the documented schema."""
        pointer = self.response_pointer(path, method, status)
        media = (content_type or "").split(";")[0].strip()
        content = self._resolve(pointer)["content"]
        assert media in content, f"{method} {path} {status}: content type {media!r} undocumented"
        if media != JSON:
            return None
        body = json.loads(body_bytes)
        schema = {"$ref": SPEC_URI + pointer + "/content/" + _escape(JSON) + "/schema"}
        errors = sorted(
            Draft202012Validator(schema, registry=self.registry).iter_errors(body),
            key=lambda e: list(e.absolute_path),
        )
        assert not errors, (
            f"{method} {path} {status} does not match the spec: "
            f"{errors[0].message[:300]} at {list(errors[0].absolute_path)}"
        )
        return body

    def validate_request(self, path, method, body):
        """Raise AssertionError unless ``body`` matches the documented request body."""
        pointer = (
            "#/paths/"
            + _escape(path)
            + f"/{method.lower()}/requestBody/content/"
            + _escape(JSON)
            + "/schema"
        )
        errors = list(
            Draft202012Validator({"$ref": SPEC_URI + pointer}, registry=self.registry).iter_errors(
                body
            )
        )
        assert not errors, (
            f"{method} {path}: the server accepted a body the spec refuses: "
            f"{errors[0].message[:300]}"
        )

    def check(self, response, path, method="POST"):
        """Validate a Flask test-client or ``requests`` response; return its JSON body."""
        status = response.status_code
        data = response.get_data() if hasattr(response, "get_data") else response.content
        return self.validate(path, method, status, response.headers.get("Content-Type"), data)

    def _resolve(self, pointer):
        node = self.spec
        for part in pointer.lstrip("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node


def _escape(part):
    return part.replace("~", "~0").replace("/", "~1")
