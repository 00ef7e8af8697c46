"""`make image-test`: the images and the compose stack, end to end, on this machine.

Starts a Docker daemon if none answers, builds (`make image`), starts docker-compose.yml
under a project name of its own (PostgreSQL, the one-shot migration, two replicas, HAProxy),
runs a short mixed load through the load balancer on 127.0.0.1, kills one replica in the
middle of it, checks the books in PostgreSQL, and tears everything down again: containers,
network, volume, and the daemon if it started one. Prints one summary line; exits 1 when a
check failed.

Every purchase carries an Idempotency-Key and is retried with it until it gets a final
answer, so the units the clients were told they bought must be exactly the units sold.
"""

# A test driver, like tests/ and bench/: no security rules (fixed credentials of its own
# stack, commands of its own, pseudo-random load).
# ruff: noqa: S105, S311, S603, S607

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.core.database import Database
from bench.data import invariant, state
from devtools.invariants import broken_invariants, units_sold

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = ["-f", "docker-compose.yml", "-f", "docker/compose.test.yml"]
API_KEY = "image-test-key"
DB_PASSWORD = "image-test"

HOT, HOT_STOCK = "hot", 300
COLD = [f"cold-{n}" for n in range(1, 5)]
COLD_STOCK = 1_000
CLIENTS = 30
PURCHASES_PER_CLIENT = 15  # 450 asked for, 300 in stock: the hot product sells out
KILL_AFTER_SOLD = HOT_STOCK // 3
LOAD_SECONDS = 120  # the load stops by itself by then, answered or not
# A purchase whose replica was killed after it claimed its key is taken over after this.
LEASE_SECONDS = 3
RETRIED = {502, 503, 504}
BUILD_TOOLS = "gcc cc c++ make pip pip3 poetry"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def run(*args: str, env: dict[str, str] | None = None) -> str:
    """A command's output; on failure its last lines are shown and the test stops."""
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n{tail}")
    return done.stdout


def daemon_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@contextmanager
def docker_daemon() -> Iterator[None]:
    """The running daemon, or one started here and stopped afterwards. Its log file is
    kept only when something failed."""
    if daemon_answers():
        yield
        return
    with tempfile.NamedTemporaryFile("w", prefix="dockerd-", suffix=".log", delete=False) as log:
        dockerd = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not daemon_answers():
            if dockerd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dockerd did not start")
            time.sleep(0.5)
        yield
    except BaseException:
        print(f"image-test: the log of the dockerd it started: {log.name}", file=sys.stderr)
        raise
    else:
        os.unlink(log.name)
    finally:
        dockerd.terminate()  # it stops the containerd it started too
        try:
            dockerd.wait(timeout=60)
        except subprocess.TimeoutExpired:
            dockerd.kill()
            dockerd.wait()


@contextmanager
def compose_stack(project: str, env: dict[str, str]) -> Iterator[list[str]]:
    """Yields the compose command of the started stack; removes it all on the way out.

    Variables come from `env` alone, not from a .env beside docker-compose.yml (in
    development that is the service's own settings file)."""
    with tempfile.NamedTemporaryFile(suffix=".env") as empty:
        compose = ["docker-compose", "--env-file", empty.name, "-p", project, *COMPOSE_FILES]
        try:
            run(*compose, "up", "-d", "--no-build", env=env)
            yield compose
        except BaseException:
            print(run(*compose, "logs", "--no-color", "--tail=20", env=env), file=sys.stderr)
            raise
        finally:
            run(*compose, "down", "--volumes", "--remove-orphans", "--timeout", "10", env=env)


def image_facts(image: str = "inventory:latest") -> list[str]:
    """The service's image runs as a user other than root and carries no build tools."""
    uid = run("docker", "run", "--rm", image, "id", "-u").strip()
    tools = run("docker", "run", "--rm", image, "sh", "-c", f"command -v {BUILD_TOOLS} || true")
    size = int(run("docker", "image", "inspect", "-f", "{{.Size}}", image)) // 1_000_000
    facts = [f"FAILED: {image} holds {tool}" for tool in tools.split()]
    if uid == "0":
        facts.append(f"FAILED: {image} runs as root")
    return facts or [f"{image}: {size} MB, uid {uid}, none of: {BUILD_TOOLS}"]


def served(container: str) -> int:
    """The /inventory requests a replica answered, counted in its own access log."""
    return sum(
        '"event": "http.request"' in line and '"route": "/inventory' in line
        for line in run("docker", "logs", container).splitlines()
    )


def wait_until_ready(base_url: str, containers: list[str], seconds: float = 120) -> None:
    """The load balancer answers /ready, and Docker calls every replica healthy."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        health = run("docker", "inspect", "-f", "{{.State.Health.Status}}", *containers).split()
        try:
            ready = httpx.get(f"{base_url}/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            ready = False
        if ready and set(health) == {"healthy"}:
            return
        time.sleep(1)
    raise RuntimeError(f"the stack was not ready after {seconds:.0f} s")


@dataclass
class Tally:
    """What the clients were told."""

    bought: Counter[str] = field(default_factory=Counter)  # units, by product
    purchases: int = 0
    refused: int = 0  # 409 insufficient-stock
    unanswered: int = 0  # no final answer by the deadline
    retries: int = 0
    reads: int = 0
    failed_reads: int = 0  # reads are not retried: those in flight at the kill may fail
    sold_after_kill: int = 0
    kill_now: asyncio.Event = field(default_factory=asyncio.Event)  # KILL_AFTER_SOLD reached
    killed: asyncio.Event = field(default_factory=asyncio.Event)


async def purchase(client: httpx.AsyncClient, tally: Tally, deadline: float) -> None:
    """One unit of the hot product (with a cold one now and then), retried under its
    Idempotency-Key until it has a final answer: sold, or refused for want of stock."""
    lines = {HOT: 1}
    if random.random() < 0.25:
        lines[random.choice(COLD)] = random.randint(1, 3)
    body = {"items": [{"product_id": pid, "quantity": q} for pid, q in lines.items()]}
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    while time.monotonic() < deadline:
        try:
            answer = await client.post("/inventory/purchase", json=body, headers=headers)
        except httpx.TransportError:
            answer = None
        if answer is not None and answer.status_code == 201:
            tally.purchases += 1
            tally.bought.update(lines)
            if tally.bought[HOT] >= KILL_AFTER_SOLD:
                tally.kill_now.set()
            tally.sold_after_kill += tally.killed.is_set()
            return
        if answer is not None and answer.status_code == 409:
            if answer.json()["type"] == "/problems/insufficient-stock":
                tally.refused += 1
                return
            # idempotency-key-in-use: the first try is still running, or its replica died
            # holding the key, which is then taken over once its lease runs out.
        elif answer is not None and answer.status_code not in RETRIED:
            raise RuntimeError(f"purchase answered {answer.status_code}: {answer.text}")
        tally.retries += 1
        await asyncio.sleep(0.5)
    tally.unanswered += 1


async def read(client: httpx.AsyncClient, tally: Tally) -> None:
    path = random.choice([f"/inventory/{HOT}", f"/inventory/{HOT}/movements?limit=10"])
    tally.reads += 1
    try:
        tally.failed_reads += (await client.get(path)).status_code != 200
    except httpx.TransportError:
        tally.failed_reads += 1


async def shopper(client: httpx.AsyncClient, tally: Tally, deadline: float) -> None:
    for _ in range(PURCHASES_PER_CLIENT):
        await purchase(client, tally, deadline)
        if random.random() < 0.5:
            await read(client, tally)


async def kill_first(tally: Tally, containers: list[str]) -> dict[str, int]:
    """Once a third of the hot stock is sold, SIGKILL the first replica. Returns what each
    replica had served by then."""
    await tally.kill_now.wait()
    served_before = {c: await asyncio.to_thread(served, c) for c in containers}
    await asyncio.to_thread(run, "docker", "kill", containers[0])
    tally.killed.set()
    return served_before


async def load_and_check(base_url: str, database_url: str, containers: list[str]) -> list[str]:
    """Runs the load, then returns the facts of the summary line, failures first."""
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"X-API-KEY": API_KEY},
        timeout=10,
        limits=httpx.Limits(max_connections=CLIENTS),
    ) as client:
        for pid, quantity in [(HOT, HOT_STOCK)] + [(pid, COLD_STOCK) for pid in COLD]:
            (await client.put(f"/inventory/{pid}", json={"quantity": quantity})).raise_for_status()
        before = await state(database_url)
        tally = Tally()
        killer = asyncio.create_task(kill_first(tally, containers))
        deadline = time.monotonic() + LOAD_SECONDS
        await asyncio.gather(*(shopper(client, tally, deadline) for _ in range(CLIENTS)))
    if not killer.done():
        killer.cancel()
        return [f"FAILED: the load ended before {KILL_AFTER_SOLD} units were sold"]
    served_before = killer.result()
    served_after = {c: served(c) for c in containers}

    books = invariant(before, await state(database_url))
    db = Database(database_url)
    try:
        problems = await broken_invariants(db)
        sold = await units_sold(db)
    finally:
        await db.dispose()

    survivor = containers[1]  # kill_first killed containers[0]
    total_before = sum(served_before.values())
    checks = {
        "both replicas served (each a quarter or more)": all(
            n * 4 >= total_before for n in served_before.values()
        ),
        "the other replica carried on after the kill": tally.sold_after_kill > 0
        and served_after[survivor] > served_before[survivor],
        "every purchase had a final answer": tally.unanswered == 0,
        "units sold are exactly those confirmed": Counter(sold) == tally.bought,
        "the hot product sold out, not over": sold.get(HOT) == HOT_STOCK,
        "the ledger balances, nothing negative": books.ok and not problems,
    }
    failed = [f"FAILED: {name}" for name, ok in checks.items() if not ok]
    failed += [f"FAILED: {problem}" for problem in problems[:5]]
    if not books.ok:
        failed.append(f"FAILED: {books.cell()}")
    requests = sum(served_after.values())
    return [
        *failed,
        f"{requests} requests over {len(containers)} replicas behind HAProxy "
        f"({' / '.join(str(served_before[c]) for c in containers)} before the kill)",
        f"{tally.purchases} purchases sold {sold.get(HOT, 0)}/{HOT_STOCK} hot units, "
        f"{tally.refused} refused for want of stock, {tally.unanswered} unanswered, "
        f"{tally.retries} retries",
        f"a replica killed at {KILL_AFTER_SOLD} sold, {tally.sold_after_kill} purchases after it",
        f"{tally.failed_reads}/{tally.reads} reads failed",
        f"books: {books.cell()}",
    ]


def main() -> int:
    started = time.monotonic()
    project = f"inventoryimagetest{os.getpid()}"
    port, db_port = free_port(), free_port()
    # Nothing of the caller's environment but what finds and runs Docker's tools.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME") or k.startswith("DOCKER_")}
    env |= {
        "API_KEY": API_KEY,
        "POSTGRES_PASSWORD": DB_PASSWORD,
        "IDEMPOTENCY_LEASE_SECONDS": str(LEASE_SECONDS),
        "INVENTORY_PORT": str(port),
        "INVENTORY_REPLICAS": "2",
        "IMAGE_TEST_DB_PORT": str(db_port),
    }
    try:
        with docker_daemon():
            run(os.environ.get("MAKE", "make"), "--no-print-directory", "image")
            facts = image_facts()
            with compose_stack(project, env) as compose:
                containers = sorted(run(*compose, "ps", "-q", "inventory", env=env).split())
                base_url = f"http://127.0.0.1:{port}"
                wait_until_ready(base_url, containers)
                database_url = f"postgresql://inventory:{DB_PASSWORD}@127.0.0.1:{db_port}/inventory"
                facts += asyncio.run(load_and_check(base_url, database_url, containers))
    except RuntimeError as error:
        print(error, file=sys.stderr)
        facts = [f"FAILED: {str(error).splitlines()[0]}"]
    facts.sort(key=lambda fact: not fact.startswith("FAILED"))  # failures first
    failed = facts[0].startswith("FAILED")
    verdict = "FAILED" if failed else "ok"
    print(f"image-test: {verdict} in {time.monotonic() - started:.0f} s: " + "; ".join(facts))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
