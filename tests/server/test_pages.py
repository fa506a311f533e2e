"""The loopback page server: its address works the moment it is given, and leaving stops it cleanly."""

from __future__ import annotations

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from kartra_mcp.server.pages import serve_app_on_loopback


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


APP = Starlette(routes=[Route("/", _hello)])


async def test_a_request_sent_the_moment_the_address_is_given_is_answered() -> None:
    async with serve_app_on_loopback(APP) as base, httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        response = await http.get(f"{base}/")

    assert response.status_code == 200
    assert response.text == "hello"


async def test_a_block_left_at_once_stops_the_server_and_frees_the_port() -> None:
    async with serve_app_on_loopback(APP) as base:
        pass

    async with httpx2.AsyncClient(trust_env=False, timeout=5) as http:
        with pytest.raises(httpx2.ConnectError):
            await http.get(f"{base}/")
