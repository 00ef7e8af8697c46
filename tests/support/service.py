"""The service under test: its settings, an app with its lifespan, and HTTP clients of it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from app.core.config import Settings, load_settings
from app.core.database import Database
from app.main import create_app
from devtools.servers import empty_directory

API_KEY = "test-key-0123456789"


class GivenSettings(Settings):
    """Settings of the values given and the defaults only: neither the process environment
    nor a `.env` file reaches a test's app."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "api_keys": {"default": API_KEY, "robot": "robot-key-abcdef"},
        "products_service_url": None,
    }
    return GivenSettings(**(values | overrides))


def start_up_refusal() -> str:
    """The one-line reason `load_settings()` stops start-up with, given the environment now,
    read where no `.env` is."""
    with pytest.raises(SystemExit) as exit_info, contextlib.chdir(empty_directory()):
        load_settings()
    return str(exit_info.value)


def client_for(app: FastAPI, **headers: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)


@dataclass(frozen=True, slots=True)
class Inventory:
    http: httpx.AsyncClient
    db: Database
    settings: Settings


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Inventory]:
    """The service as `uvicorn app.main:app` would run it, lifespan included."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        client_for(app, **{"X-API-KEY": API_KEY}) as http,
    ):
        yield Inventory(http, app.state.database, settings)
