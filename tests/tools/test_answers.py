from __future__ import annotations

import pytest

from kartra_mcp.tools.answers import garbled_answer


@pytest.mark.parametrize(
    ("body", "said"),
    [
        pytest.param(b'{"status": "Succ', "not JSON", id="cut-off"),
        pytest.param(b"<html>Bad gateway</html>", "<html>Bad gateway", id="an-html-page"),
        pytest.param(b"", "empty body", id="empty"),
    ],
)
def test_a_success_answer_that_is_not_json_is_garbled_and_says_what_came_back(body: bytes, said: str) -> None:
    problem = garbled_answer(200, body)
    assert problem is not None and said in str(problem)
    assert problem.retryable and problem.may_have_executed


def test_json_answers_and_error_statuses_are_not_garbled() -> None:
    assert garbled_answer(200, b'{"status": "Success"}') is None
    assert garbled_answer(502, b"<html>") is None
