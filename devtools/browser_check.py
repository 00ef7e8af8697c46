"""The API pages in a real browser: headless Chromium, driven over the DevTools protocol.

    python -m devtools.browser_check http://127.0.0.1:8002 [--screenshots DIR]

On `/docs` it presses "Try it out" and then "Execute" on every operation, deletions last,
with what Swagger UI fills in by itself, and checks that each answer's status is one the
page documents for that operation. On `/redoc` it records every request the page makes and
checks that none leaves the machine. Prints one line per operation and a verdict; exits 1
when something is wrong. Needs Chromium (Debian: `apt-get install chromium`); not part of
`make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import websockets

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}

# Runs in the page: every operation's "Try it out" → "Execute", as a person would.
_EXECUTE_ALL = """
async () => {
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  const waitFor = async (find, ms = 20000) => {
    for (const start = Date.now(); Date.now() - start < ms; await sleep(50)) {
      const found = find();
      if (found) return found;
    }
    return null;
  };
  const blocks = [...document.querySelectorAll(".opblock")].sort(
    (a, b) => a.classList.contains("opblock-delete") - b.classList.contains("opblock-delete"));
  const results = [];
  for (const block of blocks) {
    const method = block.querySelector(".opblock-summary-method").textContent.trim();
    const path = block.querySelector(".opblock-summary-path").getAttribute("data-path");
    block.querySelector(".opblock-summary-control").click();
    (await waitFor(() => block.querySelector(".try-out__btn"))).click();
    const execute = await waitFor(() => block.querySelector(".execute"));
    const filled = Object.fromEntries([...block.querySelectorAll("tr[data-param-in='path']")]
      .map((row) => [row.getAttribute("data-param-name"), row.querySelector("input").value]));
    execute.click();
    const status = await waitFor(() => {
      const cell = block.querySelector(".live-responses-table tbody .response-col_status");
      return cell && /^[0-9]{3}/.test(cell.textContent.trim()) ? cell : null;
    });
    const documented = [...block.querySelectorAll(".responses-table tr.response[data-code]")]
      .filter((row) => !row.closest(".live-responses-table"))
      .map((row) => row.getAttribute("data-code"));
    results.push({method, path, filled, documented,
                  status: status ? status.textContent.trim().slice(0, 3) : null});
  }
  return results;
}
"""


class Page:
    """One browser tab over the DevTools protocol: commands, and the events seen."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        await self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result
            self.events.append(message)

    async def open(self, url: str, ready: str) -> None:
        """Go to `url` and wait until `ready` (a JavaScript expression) holds."""
        await self.call("Page.navigate", url=url)
        for _ in range(600):
            found = await self.evaluate(ready)
            if found:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{url}: {ready} never held")

    async def evaluate(self, expression: str) -> Any:
        answer = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        return answer["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


def _requested(events: list[dict[str, Any]]) -> list[str]:
    return [
        event["params"]["request"]["url"]
        for event in events
        if event.get("method") == "Network.requestWillBeSent"
    ]


def _off_machine(urls: list[str]) -> list[str]:
    return [
        url
        for url in urls
        if urlsplit(url).scheme in ("http", "https", "ws", "wss")
        and urlsplit(url).hostname not in LOCAL_HOSTS
    ]


async def check(base_url: str, shots: Path | None) -> bool:
    with tempfile.TemporaryDirectory() as profile:
        browser = await asyncio.create_subprocess_exec(
            "chromium",
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            for _ in range(200):
                if port_file.exists() and port_file.read_text().count("\n") >= 1:
                    break
                await asyncio.sleep(0.05)
            port = port_file.read_text().split("\n")[0]
            async with httpx.AsyncClient() as http:
                targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
            [tab] = [target for target in targets if target["type"] == "page"]
            async with websockets.connect(tab["webSocketDebuggerUrl"], max_size=None) as socket:
                return await _check_pages(Page(socket), base_url, shots)
        finally:
            browser.terminate()
            await asyncio.wait_for(browser.wait(), 10)


async def _check_pages(page: Page, base_url: str, shots: Path | None) -> bool:
    await page.call("Network.enable")
    await page.call("Page.enable")
    good = True

    await page.open(
        f"{base_url}/redoc", "document.querySelectorAll('.menu-content li').length > 10"
    )
    await page.evaluate("new Promise((done) => setTimeout(done, 2000))")
    requested = _requested(page.events)
    away = _off_machine(requested)
    print(f"/redoc: {len(requested)} requests, off the machine: {away or 'none'}")
    good &= not away
    if shots:
        await page.screenshot(shots / "redoc.png")

    page.events.clear()
    await page.open(f"{base_url}/docs", "document.querySelectorAll('.opblock').length > 10")
    results = await page.evaluate(f"({_EXECUTE_ALL})()")
    for result in results:
        fine = result["status"] in result["documented"]
        good &= fine
        print(
            f"{'ok ' if fine else 'BAD'} {result['method']:6} {result['path']:45} "
            f"{result['status']} (documented: {' '.join(result['documented'])}) {result['filled']}"
        )
    away = _off_machine(_requested(page.events))
    print(f"/docs: off the machine: {away or 'none'}")
    good &= not away
    if shots:
        await page.screenshot(shots / "docs.png")
    print("browser check: " + ("ok" if good else "FAILED"))
    return good


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("base_url", nargs="?", default="http://127.0.0.1:8002")
    parser.add_argument("--screenshots", type=Path, help="save docs.png and redoc.png here")
    args = parser.parse_args(argv)
    if args.screenshots is not None:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    sys.exit(0 if asyncio.run(check(args.base_url.rstrip("/"), args.screenshots)) else 1)


if __name__ == "__main__":
    main()
