"""What the API server said: every cause it listed reaches a message."""

from __future__ import annotations

import json

from shadowroute.api_errors import ApiError, api_causes, api_message, api_reason


def answer(status: dict) -> ApiError:
    exc = ApiError(status=status.get("code", 422), reason="Unprocessable Entity")
    exc.body = json.dumps(status)
    return exc


CAUSES = [
    {"reason": "FieldValueInvalid", "message": 'Invalid value: "A": bad', "field": "x.name"},
    {"reason": "FieldValueInvalid", "message": "Invalid value: -1: range", "field": "y.port"},
]


def test_every_cause_is_in_the_message() -> None:
    exc = answer({"message": "Deployment.apps \"d\" is invalid", "reason": "Invalid",
                  "details": {"causes": CAUSES}})  # fmt: skip
    assert api_causes(exc) == [
        'x.name: Invalid value: "A": bad',
        "y.port: Invalid value: -1: range",
    ]
    reason, message = api_reason(exc)
    assert reason == "Invalid"
    assert "x.name: Invalid" in message and "y.port: Invalid value: -1" in message


def test_causes_the_message_already_lists_are_not_repeated() -> None:
    text = 'd is invalid: [x.name: Invalid value: "A": bad, y.port: Invalid value: -1: range]'
    exc = answer({"message": text, "reason": "Invalid", "details": {"causes": CAUSES}})
    assert api_message(exc) == text


def test_a_body_that_is_not_a_status() -> None:
    exc = ApiError(status=404, reason="Not Found")
    exc.body = "404 page not found"
    assert api_reason(exc) == ("Not Found", "Not Found")
