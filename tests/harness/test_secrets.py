"""harness.core.secrets: what is masked, and the CLI's log handlers and unexpected-error tracebacks."""

from __future__ import annotations

import logging
import sys

import pytest

from harness.core.secrets import RedactingFilter, redact, register_url, split_query


def test_basic_auth_headers_are_masked() -> None:
    assert redact("Authorization: Basic dXNlcjpwdzEyMzQ=") == "Authorization: Basic ***"
    assert redact("{'authorization': 'Basic dXNlcjpwdzEyMzQ='}") == "{'authorization': 'Basic ***'}"
    assert redact("a basic question") == "a basic question"


def test_a_urls_credentials_stay_masked_without_the_url() -> None:
    register_url("http://user:pa%24%24word1@host/v1?api-version=2024-06-01&api_key=qkey1234")
    assert redact("decoded pa$$word1, raw pa%24%24word1, query qkey1234") == "decoded ***, raw ***, query ***"
    assert redact("api-version=2024-06-01 user") == "api-version=2024-06-01 user"  # not credentials


def test_split_query_takes_the_query_off_a_base_url() -> None:
    assert split_query("http://u:p@h:8/v1?api_key=x&api-version=2") == ("http://u:p@h:8/v1",
                                                                       {"api_key": "x", "api-version": "2"})
    assert split_query("https://api.openai.com/v1") == ("https://api.openai.com/v1", {})


def test_redacting_filter_masks_the_formatted_message() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "POST %s", ("http://u:pw99@h/v1?token=t0k3n",), None)
    assert RedactingFilter().filter(record) and record.getMessage() == "POST http://***@h/v1?token=***"


def test_cli_log_handlers_and_unexpected_tracebacks_are_redacted(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    from harness.cli import main

    handler = logging.StreamHandler(sys.stderr)
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    assert main(["list", "judges"]) == 0
    assert any(isinstance(f, RedactingFilter) for f in handler.filters)
    capsys.readouterr()
    logging.getLogger("harness.test").warning("endpoint %s", "http://user:hidden77@h/v1")
    try:
        raise RuntimeError("no answer from http://user:hidden88@h/v1?key=k3y")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert "http://***@h/v1" in err and "RuntimeError: no answer from http://***@h/v1?key=***" in err
    assert "hidden77" not in err and "hidden88" not in err and "k3y" not in err
