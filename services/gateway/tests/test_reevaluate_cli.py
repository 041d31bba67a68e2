"""`python -m rnpc_gateway.reevaluate`: the admin routes need a bearer token, so the CLI sends one."""

from __future__ import annotations

import httpx
import pytest

from rnpc_gateway.reevaluate import main


def test_refuses_to_start_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RNPC_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["--gateway", "http://gateway.invalid"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("from_env", [True, False])
def test_every_call_carries_the_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], from_env: bool) -> None:
    seen: list[str | None] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        if request.method == "POST":
            return httpx.Response(202, json={"cases": 2, "started_at": "2026-01-01T00:00:00Z",
                                             "current": {"rules": "rules/r2", "evidence": "evidence/e1"}})
        return httpx.Response(200, json={"remaining": 0, "superseded": 2, "changed": 1,
                                         "by_reason": {"rules": {"superseded": 2, "changed": 1}}})

    argv = ["--gateway", "http://gateway.test"]
    if from_env:
        monkeypatch.setenv("RNPC_TOKEN", "tok-env")
    else:
        monkeypatch.delenv("RNPC_TOKEN", raising=False)
        argv += ["--token", "tok-arg"]
    main(argv, transport=httpx.MockTransport(gateway))
    expected = "Bearer tok-env" if from_env else "Bearer tok-arg"
    assert seen and all(header == expected for header in seen)
    assert "superseded: 2, advice changed: 1" in capsys.readouterr().out
