"""Log set-up for the process: structlog for the service's lines, the standard library's
for everyone else's, both rendered alike.

JSON (one object a line) or a console rendering; the lines of uvicorn, alembic and SQLAlchemy
look like ours. Every line carries the request id of the request it was written for, and
secrets never reach the output.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO
from urllib.parse import quote, urlsplit

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from app.core.config import Settings
from app.core.context import request_id_var

_HANDLER_NAME = "inventory"
# Loggers that install handlers of their own (the servers' default configs) are routed to ours.
_ADOPTED_LOGGERS = ("uvicorn", "uvicorn.error", "_granian", "alembic")
# The service writes one access line per request itself (`http.request`); a server writes its
# own whenever its access logger has a handler anywhere up its chain, so it gets none.
_SILENCED_LOGGERS = ("uvicorn.access", "granian.access")
_SECRET_NAME = re.compile(r"key|authorization|secret|password|token", re.IGNORECASE)
MASK = "***"
_NUMBERS = frozenset({int, float, bool, type(None)})

Stream = Literal["stdout", "stderr"]


def add_request_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The request id of the request being served, unless the line names one itself."""
    request_id = request_id_var.get()
    if request_id != "-":  # the variable's default: not inside a request
        event_dict.setdefault("request_id", request_id)
    return event_dict


def _drop_message_copies(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # Copies of `event` that look like extras: the formatted message the standard library
    # caches on its records, and the ANSI-coloured one uvicorn passes.
    event_dict.pop("message", None)
    event_dict.pop("color_message", None)
    return event_dict


def _token_pattern(secret: str) -> re.Pattern[str]:
    """The secret, not preceded or followed by a letter or digit."""
    return re.compile(rf"(?<![^\W_]){re.escape(secret)}(?![^\W_])")


class MaskSecrets:
    """Hides values of fields named like a secret, and any known secret wherever it appears.

    The second rule catches a key that slipped into a message or a traceback. A secret is
    masked where it stands as a whole token, so that a short key (`k`) does not shred every
    word that contains its letters.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
        self._tokens = {secret: _token_pattern(secret) for secret in self.secrets}
        self._secret_names: dict[str, bool] = {}  # field names recur: match each one once

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        self._mask_in_place(event_dict)
        return event_dict

    def _mask_in_place(self, mapping: MutableMapping[str, Any]) -> None:
        # Every line passes here, field by field: the usual field (a number, a short text
        # holding no secret, a name seen before) costs no function call.
        names = self._secret_names
        for name, value in mapping.items():
            if type(value) in _NUMBERS:
                continue
            secret_name = names[name] if name in names else self._is_secret_name(name)
            if secret_name:
                mapping[name] = MASK
            elif type(value) is str:
                for secret in self.secrets:
                    if secret in value:  # a plain test first: most lines hold no secret
                        mapping[name] = self._mask_text(value)
                        break
            else:
                mapping[name] = self._mask_value(value)

    def _is_secret_name(self, name: str) -> bool:
        secret = name != "event" and _SECRET_NAME.search(name) is not None
        self._secret_names[name] = secret
        return secret

    def _mask_text(self, text: str) -> str:
        for secret in self.secrets:
            text = self._tokens[secret].sub(MASK, text)
        return text

    def _mask_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._mask_text(value)
        if isinstance(value, dict):
            copy = dict(value)  # the caller's dict is theirs: mask a copy
            self._mask_in_place(copy)
            return copy
        if isinstance(value, list | tuple):
            return [self._mask_value(item) for item in value]
        return value


# What every line gets, whoever wrote it: ours through structlog, others' through the
# standard library's handler.
_SHARED: list[Processor] = [
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    add_request_id,
]


class _Output:
    """Where the lines go and in what form: what `configure_logging` last chose.

    structlog keeps each logger it assembles (`cache_logger_on_first_use`, as its docs advise
    for speed) with the processor list and the logger of that moment; so both are this one
    object's, changed in place, and a later configuration (another app in the tests, the CLI
    after the server) reaches the loggers assembled before it.
    """

    def __init__(self) -> None:
        self.stream: Stream = "stdout"
        self.processors: list[Processor] = []


_OUTPUT = _Output()


class _LineWriter:
    """structlog's logger: a rendered line written whole to the current standard stream.

    One `write` and one `flush` a line, so a pipe gets each line as it happens and lines from
    several workers never interleave. The stream is looked up at each line, so output captured
    by a test runner, or redirected by a CLI command, is followed.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name  # the `logger` field

    def msg(self, line: str) -> None:
        stream = _stream(_OUTPUT.stream)
        stream.write(line + "\n")
        stream.flush()

    debug = info = warning = error = critical = exception = msg


def configure_logging(settings: Settings, *, stream: Stream = "stdout") -> None:
    """Send every line of the process to `stream` in LOG_FORMAT, at LOG_LEVEL.

    structlog's loggers (the service's own lines: `http.request`, `inventory.changed` …) are
    filtered by level before any work is done, and rendered and written by structlog alone;
    the standard library's (uvicorn, alembic, SQLAlchemy, a few of ours for errors) go through
    one handler of the root logger that renders them the same way.

    Safe to call more than once (each app in the tests calls it): it replaces only its own
    handler, so handlers that others added to the root logger stay. The level of a structlog
    logger is the one in force when it first logged: a process has one level.
    """
    log_format = settings.log_format or ("console" if _stream(stream).isatty() else "json")
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=_stream(stream).isatty())
    )
    secrets = [key for _, key in settings.actor_keys()]
    if settings.products_api_key is not None:
        secrets.append(settings.products_api_key.get_secret_value())
    if settings.products_service_url is not None:
        # A password in the URL is sent as basic auth; should it still reach a line, hide it.
        password = urlsplit(settings.products_service_url).password
        if password:
            secrets += [password, quote(password, safe="")]
    finish: list[Processor] = [structlog.processors.format_exc_info, MaskSecrets(secrets), renderer]

    _OUTPUT.stream = stream
    _OUTPUT.processors[:] = [*_SHARED, *finish]
    structlog.configure(
        processors=_OUTPUT.processors,
        wrapper_class=structlog.make_filtering_bound_logger(settings.log_level),
        logger_factory=_LineWriter,
        cache_logger_on_first_use=True,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), _drop_message_copies, *_SHARED],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish],
    )
    handler = _StandardStreamHandler(stream)
    handler.name = _HANDLER_NAME
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in _ADOPTED_LOGGERS:
        adopted = logging.getLogger(name)
        adopted.handlers.clear()
        adopted.propagate = True
        adopted.setLevel(logging.NOTSET)
    for name in _SILENCED_LOGGERS:
        silenced = logging.getLogger(name)
        silenced.handlers.clear()
        silenced.propagate = False
    # aiosqlite logs every statement at DEBUG, which buries everything else; alembic a line
    # per plugin it loads, on its first import, which may come after this (commands import
    # it only when they use it).
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, root.level))
    logging.getLogger("alembic.runtime.plugins").setLevel(max(logging.WARNING, root.level))


def _stream(name: Stream) -> TextIO:
    stream: TextIO = getattr(sys, name)
    return stream


class _StandardStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stdout`/`sys.stderr` is at the time of each line.

    So output captured by a test runner, or redirected by a CLI command, is followed.
    """

    def __init__(self, name: Stream) -> None:
        super().__init__()
        self._stream_name: Stream = name

    @property
    def stream(self) -> TextIO:
        return _stream(self._stream_name)

    @stream.setter
    def stream(self, _: TextIO) -> None:
        """The stream is always the current standard one; StreamHandler's own value is ignored."""
