"""Every shell example of the README and of docs/ runs, in order, against a fresh service,
and answers what the text shows (see `tests/docs/runner.py` for the convention)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from devtools.fake_products import FakeProductsServer
from tests.docs import runner

DOCUMENTS = [
    runner.PROJECT_ROOT / "README.md",
    *sorted((runner.PROJECT_ROOT / "docs").glob("*.md")),
]
# `make demo`'s keys: the documents that say `<!-- examples: demo -->` run against them.
DEMO_API_KEY = "demo-key"
DEMO_PRODUCTS_API_KEY = "demo-products-key"

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None, reason="the examples are curl commands; curl is not installed"
)


def _service_env(setup: list[str], stack: ExitStack, home: Path) -> dict[str, str]:
    settings: dict[str, str] = {"LOG_LEVEL": "WARNING"}
    for word in setup:
        if word == "demo":
            fake = stack.enter_context(FakeProductsServer())
            fake.require_api_key(DEMO_PRODUCTS_API_KEY)
            settings |= {
                "API_KEY": DEMO_API_KEY,
                "PRODUCTS_SERVICE_URL": fake.url,
                "PRODUCTS_API_KEY": DEMO_PRODUCTS_API_KEY,
            }
        else:
            name, _, value = word.partition("=")
            settings[name] = value
    return runner.clean_env(home, **settings)


def run_document(document: runner.Document, home: Path) -> int:
    """Runs the document's examples against a service of its own; the number run."""
    with ExitStack() as stack:
        service = stack.enter_context(
            runner.Service(home, _service_env(document.setup, stack, home))
        )
        shell = runner.Shell(
            runner.clean_env(home),
            {
                runner.SERVICE: f"127.0.0.1:{service.port}",
                runner.RECEIVER: f"127.0.0.1:{runner.free_port()}",
            },
        )
        stack.callback(shell.stop)
        for command in document.commands:
            shell.run(command)
    return len(document.commands)


def _documents() -> Iterator[runner.Document]:
    for path in DOCUMENTS:
        document = runner.read(path)
        if document.commands:
            yield document


@pytest.mark.parametrize("document", list(_documents()), ids=lambda d: d.path.name)
def test_the_examples_answer_what_the_text_shows(document: runner.Document, tmp_path: Path) -> None:
    assert run_document(document, tmp_path) > 0


def test_the_readme_and_the_guides_have_examples_that_are_run() -> None:
    names = {document.path.name for document in _documents()}
    assert {"README.md", "api.md", "events-and-webhooks.md", "products-service.md"} <= names
    readme = runner.read(runner.PROJECT_ROOT / "README.md")
    assert sum(command.expected is not None for command in readme.commands) >= 10


def test_a_changed_answer_fails(tmp_path: Path) -> None:
    """The runner is not a rubber stamp: an answer other than the one written fails it."""
    page = tmp_path / "page.md"
    page.write_text(
        "```sh\n"
        "curl -i -X PUT http://127.0.0.1:8002/inventory/42 \\\n"
        "  -H 'Content-Type: application/json' -d '{\"quantity\": 17}'\n"
        '# → 201 {"quantity": 18, …}\n'
        "```\n",
        encoding="utf-8",
    )
    document = runner.read(page)
    assert len(document.commands) == 1
    with pytest.raises(AssertionError, match="documented"):
        run_document(document, tmp_path)


@pytest.mark.parametrize(
    ("expected", "actual", "same"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, True),
        ({"a": runner.ANY}, {"a": [1]}, True),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": None}, {"a": 0}, False),
        ({"a": True}, {"a": 1}, False),
        ([{"a": 1}], [{"a": 1}, {"a": 2}], False),
        ({"a": "x"}, {}, False),
    ],
)
def test_fields_shown_must_be_there_with_their_values(
    expected: object, actual: object, same: bool
) -> None:
    assert runner.matches(expected, actual) is same


def test_the_answer_convention_reads_ellipses_and_continued_lines(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```sh\n"
        "curl -i http://127.0.0.1:8002/inventory/42\n"
        '# → 200 {"product_id": "42", "version": "…",\n'
        '#        "product": null, …}\n'
        "curl -i -X DELETE http://127.0.0.1:8002/inventory/42\n"
        "# → 204\n"
        "```\n",
        encoding="utf-8",
    )
    first, second = runner.read(page).commands
    assert first.expected is not None
    assert second.expected is not None
    assert first.expected.body == {"product_id": "42", "version": runner.ANY, "product": None}
    assert (second.expected.status, second.expected.body) == (204, None)
