"""Every setting is in `.env.example` (at its default) and in docs/settings.md."""

from __future__ import annotations

import re

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.core.config import Settings
from tests.docs.runner import PROJECT_ROOT
from tests.support.service import GivenSettings

ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
SETTINGS_PAGE = PROJECT_ROOT / "docs" / "settings.md"
# Read by prometheus-client from the real environment, not by `Settings`.
OUTSIDE_SETTINGS = {"PROMETHEUS_MULTIPROC_DIR"}


class FromEnvExample(Settings):
    """The settings of `.env.example` alone: not the environment, not a developer's `.env`."""

    model_config = SettingsConfigDict(env_file=ENV_EXAMPLE)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (dotenv_settings,)


SETTINGS = {name.upper() for name in Settings.model_fields}


def test_env_example_names_every_setting() -> None:
    written = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert sorted(SETTINGS - written) == []
    assert sorted(written - SETTINGS) == []


def test_env_example_holds_the_defaults() -> None:
    assert FromEnvExample().model_dump() == GivenSettings().model_dump()


def test_the_settings_page_names_every_setting() -> None:
    first_cells = [
        line.split("|")[1]
        for line in SETTINGS_PAGE.read_text().splitlines()
        if line.startswith("|")
    ]
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Z0-9_]+)`", cell)}
    assert sorted(SETTINGS - documented) == []
    assert sorted(documented - SETTINGS - OUTSIDE_SETTINGS) == []
