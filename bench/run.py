"""`make bench`: the service against its ceilings, measured in the same run, reported as ratios.

    python -m bench.run            # short: 1 worker, both engines, a few seconds per scenario
    python -m bench.run --full     # the whole grid: 1 and 2 workers, longer runs
    python -m bench.run --webhook-pairs 3   # purchase-hot with, then without, a webhook endpoint
    python -m bench.run --server-pairs 3    # the service on granian and on uvicorn, paired

Every scenario runs first on its ceiling, then on the service, back to back on the same
settings, so a noisy neighbour weighs on both figures of a ratio alike. The table goes into
bench/RESULTS.md between its markers; the raw figures into bench/out/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import data
from bench.servers import (
    HOST,
    ROOT,
    SERVER_KINDS,
    Load,
    Server,
    ServerKind,
    post_json,
    received,
    receiver,
    serve,
    uvicorn,
    wrk,
)

API_KEY = "bench-key-0123456789"
REPLAY_KEY = "bench-replay"
RESULTS = ROOT / "bench" / "RESULTS.md"
RAW_DIR = ROOT / "bench" / "out"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    ceiling: str  # "bare" or "raw-sql"
    ceiling_scenario: str  # what the ceiling app is asked
    ok: frozenset[int]
    expected_refusals: frozenset[int] = frozenset()
    purchase: bool = False


SCENARIOS = [
    Scenario("get-hot", "bare", "get-hot", frozenset({200})),
    Scenario("get-spread", "bare", "get-spread", frozenset({200})),
    Scenario("put-spread", "raw-sql", "put-spread", frozenset({200})),
    Scenario("purchase-hot", "raw-sql", "purchase-hot", frozenset({201}), frozenset({409}), True),
    Scenario(
        "purchase-spread", "raw-sql", "purchase-spread", frozenset({201}), frozenset({409}), True
    ),
    # Each connection alternates: hold one unit of the hot product, then confirm that hold.
    Scenario(
        "reserve-confirm-hot",
        "raw-sql",
        "reserve-confirm-hot",
        frozenset({201}),
        frozenset({409}),
        True,
    ),
    # A replay reads the stored answer: its ceiling is the raw one-row read.
    Scenario("purchase-replay", "raw-sql", "get-hot", frozenset({201}), frozenset({409}), True),
]


@dataclass(slots=True)
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    ok: int
    refused: int  # the expected refusals (409)
    errors: int  # anything else: other statuses, socket errors, timeouts
    shed: int  # answered 503 overloaded at once (load shedding)
    statuses: dict[str, int]

    @classmethod
    def of(cls, raw: dict[str, Any], scenario: Scenario, ok: frozenset[int]) -> Figures:
        statuses = {str(k): int(v) for k, v in raw["statuses"].items()}
        codes = {int(k): v for k, v in statuses.items() if k.isdigit()}
        good = sum(v for k, v in codes.items() if k in ok)
        refused = sum(v for k, v in codes.items() if k in scenario.expected_refusals)
        shed = statuses.get("shed", 0)
        socket_errors = sum(int(v) for v in raw["socket_errors"].values())
        errors = sum(statuses.values()) - good - refused - shed + socket_errors
        return cls(
            # Served requests only: a shed one is an instant refusal, not throughput.
            rps=(raw["requests"] - shed) / (raw["duration_us"] / 1e6),
            p50_ms=raw["p50_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            ok=good,
            refused=refused,
            errors=errors,
            shed=shed,
            statuses=statuses,
        )

    @property
    def shed_share(self) -> float:
        answered = self.ok + self.refused + self.errors + self.shed
        return self.shed / answered if answered else 0.0

    @property
    def spread(self) -> float:
        """p99 ÷ p50: how far the slowest requests lie from the typical one."""
        return self.p99_ms / self.p50_ms if self.p50_ms else 0.0


@dataclass(slots=True)
class Row:
    scenario: str
    engine: str
    workers: int
    app: Figures
    ceiling_name: str
    ceiling: Figures
    invariant: str = "—"
    invariant_ok: bool = True

    @property
    def ratio(self) -> float:
        return self.app.rps / self.ceiling.rps if self.ceiling.rps else 0.0


@dataclass(slots=True)
class Plan:
    engines: list[str]
    workers: list[int]
    scenarios: list[Scenario]
    load: Load
    warmup: Load
    postgres_url: str
    app_env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    shed_limit: int = 0  # also run SHED_SCENARIOS with MAX_REQUESTS_IN_PROGRESS at this (0: no)
    webhook: bool = True  # also run WEBHOOK_SCENARIOS with one endpoint subscribed to "*"
    server: ServerKind = "granian"  # the ASGI server of the service and of its ceilings


# Run again with load shedding at `--shed-limit`: how tails and throughput change.
SHED_SCENARIOS = ("get-hot", "purchase-hot")
# Run again with one webhook endpoint subscribed to every event, at a loopback receiver.
WEBHOOK_SCENARIOS = ("purchase-hot",)
WEBHOOK_SUFFIX = " webhook"
# Service ÷ ceiling, 1 worker, that the run is judged against.
TARGET_RATIOS = {
    "get-hot": {"sqlite": 0.45, "postgresql": 0.25},
    "purchase-hot": {"sqlite": 0.5, "postgresql": 0.3},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="1 and 2 workers, 10 s runs")
    parser.add_argument("--seconds", type=float, help="measured seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--workers", help="comma-separated worker counts, e.g. 1,2")
    parser.add_argument("--scenarios", help="comma-separated scenario names")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the Markdown file to update")
    parser.add_argument("--label", default="", help="a note printed above the table")
    parser.add_argument(
        "--app-env", action="append", default=[], metavar="NAME=VALUE", help="service setting"
    )
    parser.add_argument(
        "--shed-limit",
        type=int,
        default=16,
        help=f"rerun {', '.join(SHED_SCENARIOS)} with MAX_REQUESTS_IN_PROGRESS=N (0: skip)",
    )
    parser.add_argument(
        "--no-webhook",
        action="store_true",
        help=f"skip rerunning {', '.join(WEBHOOK_SCENARIOS)} with a webhook endpoint subscribed",
    )
    parser.add_argument(
        "--webhook-pairs",
        type=int,
        default=0,
        metavar="N",
        help="only purchase-hot, 1 worker: N pairs of runs with one webhook endpoint, then "
        "without, interleaved on one database; prints each pair's ratio and their median",
    )
    parser.add_argument(
        "--server-pairs",
        type=int,
        default=0,
        metavar="N",
        help="only get-hot and purchase-hot, SQLite, 1 worker: N rounds of the service and the "
        "bare app on each ASGI server, interleaved; prints service ÷ bare per server and round",
    )
    parser.add_argument(
        "--server",
        choices=SERVER_KINDS,
        default="granian",
        help="the ASGI server of the service and its ceilings: granian runs the service as "
        "`inventory serve` does, uvicorn as `uvicorn app.main:app` does",
    )
    args = parser.parse_args()

    seconds = args.seconds or (10.0 if args.full else 3.0)
    chosen = set(args.scenarios.split(",")) if args.scenarios else None
    plan = Plan(
        engines=args.engines.split(","),
        workers=[int(w) for w in (args.workers or ("1,2" if args.full else "1")).split(",")],
        scenarios=[s for s in SCENARIOS if chosen is None or s.name in chosen],
        load=Load(args.connections, seconds),
        warmup=Load(args.connections, 2.0 if args.full else 1.0),
        postgres_url=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        app_env=dict(pair.split("=", 1) for pair in args.app_env),
        shed_limit=args.shed_limit,
        webhook=not args.no_webhook,
        server=args.server,
    )
    if plan.app_env:
        plan.notes.append(f"Service settings changed for this run: {plan.app_env}.")
    if "postgresql" in plan.engines and not _postgres_answers(plan.postgres_url):
        plan.engines.remove("postgresql")
        plan.notes.append(f"PostgreSQL at {plan.postgres_url} did not answer: skipped.")

    if args.webhook_pairs:
        print(webhook_pairs(plan, args.webhook_pairs))
        return
    if args.server_pairs:
        print(server_pairs(plan, args.server_pairs))
        return
    started = datetime.now(UTC)
    began = time.monotonic()
    rows = run(plan)
    elapsed = time.monotonic() - began
    command = os.environ.get("BENCH_COMMAND") or "python -m bench.run " + " ".join(sys.argv[1:])
    report = render(rows, plan, started=started, elapsed=elapsed, command=command.strip())
    if args.label:
        report = f"_{args.label}_\n\n{report}"
    write_report(args.out, report)
    RAW_DIR.mkdir(exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    (RAW_DIR / f"{stamp}.json").write_text(json.dumps([asdict(row) for row in rows], indent=1))
    print(report)
    print(f"wrote {args.out} in {elapsed:.0f}s")


def _postgres_answers(url: str) -> bool:
    async def ping() -> None:
        connection = await asyncpg.connect(url, timeout=5)
        await connection.close()

    try:
        asyncio.run(ping())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    return True


def run(plan: Plan) -> list[Row]:
    rows: list[Row] = []
    with _catalog() as (tmp, catalog):
        for workers in plan.workers:
            with serve(
                "bare ceiling",
                "bench.ceilings.bare:app",
                workers=workers,
                env={},
                health="/inventory/hot",
                kind=plan.server,
            ) as bare:
                for engine in plan.engines:
                    directory = Path(tmp) / f"{engine}-{workers}"
                    directory.mkdir()
                    with _databases(engine, plan, directory) as (app_url, raw_url):
                        rows += _engine_rows(
                            plan, engine, workers, (app_url, raw_url), catalog, bare, directory
                        )
    return rows


@contextmanager
def _catalog() -> Iterator[tuple[str, Server]]:
    """A scratch directory, and the fake products service."""
    with (
        tempfile.TemporaryDirectory(prefix="inventory-bench-") as tmp,
        uvicorn(
            "fake products", "bench.fake_catalog:app", workers=1, env={}, health="/health"
        ) as catalog,
    ):
        yield tmp, catalog


def _service_env(plan: Plan, app_url: str, catalog: Server) -> dict[str, str]:
    """The service's settings in every run: the realistic path at the defaults (LOG_LEVEL INFO,
    one JSON access line per request); `--app-env LOG_LEVEL=WARNING` measures without them."""
    return {
        "DATABASE_URL": app_url,
        "API_KEY": API_KEY,
        "API_KEYS": "",
        "PRODUCTS_SERVICE_URL": catalog.url,
        "PRODUCTS_API_KEY": "",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "CORS_ORIGINS": "",
    } | plan.app_env


@contextmanager
def _databases(engine: str, plan: Plan, directory: Path) -> Iterator[tuple[str, str]]:
    if engine == "sqlite":
        manager = data.sqlite_databases(directory, 2)
    else:
        manager = data.postgres_databases(plan.postgres_url, 2)
    with manager as (app_url, raw_url):
        for url in (app_url, raw_url):
            asyncio.run(data.seed(url))
        yield app_url, raw_url


def _service(
    plan: Plan, env: dict[str, str], workers: int, log: Path
) -> AbstractContextManager[Server]:
    """The service at `env` as `inventory serve` runs it (granian) or as `uvicorn
    app.main:app` does, its log lines appended to `log`."""
    serve_command = [sys.executable, "-m", "app.cli", "serve", "--host", HOST]
    return serve(
        "inventory",
        "app.main:app",
        workers=workers,
        env=env,
        health="/health",
        kind=plan.server,
        command=[*serve_command, "--workers", str(workers)] if plan.server == "granian" else None,
        log=log,
    )


def _engine_rows(
    plan: Plan,
    engine: str,
    workers: int,
    urls: tuple[str, str],
    catalog: Server,
    bare: Server,
    directory: Path,
) -> list[Row]:
    app_url, raw_url = urls
    app_env = _service_env(plan, app_url, catalog)
    variants = [("", app_env, plan.scenarios)]
    if plan.shed_limit:
        shed_env = app_env | {"MAX_REQUESTS_IN_PROGRESS": str(plan.shed_limit)}
        shed_scenarios = [s for s in plan.scenarios if s.name in SHED_SCENARIOS]
        variants.append((f" shed@{plan.shed_limit}", shed_env, shed_scenarios))
    webhook_scenarios = [s for s in plan.scenarios if s.name in WEBHOOK_SCENARIOS]
    if plan.webhook and webhook_scenarios:
        webhook_env = app_env | {"WEBHOOK_ALLOWED_HOSTS": HOST}
        variants.append((WEBHOOK_SUFFIX, webhook_env, webhook_scenarios))
    rows = []
    with serve(
        "raw-SQL ceiling",
        "bench.ceilings.raw_sql:app",
        workers=workers,
        env={"RAW_DATABASE_URL": raw_url},
        health=f"/inventory/{data.HOT}",
        kind=plan.server,
    ) as raw:
        ceilings = {"bare": bare, "raw-sql": raw}
        for suffix, env, scenarios in variants:
            hooked = suffix == WEBHOOK_SUFFIX
            with (
                _service(plan, env, workers, directory / "service.log") as app,
                receiver() if hooked else nullcontext("") as hook_url,
            ):
                if hooked:
                    events_before = asyncio.run(data.event_count(app_url))
                    _subscribe(app.url, hook_url)
                for scenario in scenarios:
                    rows.append(
                        _scenario_row(
                            plan, scenario, suffix, engine, workers, app, app_url, ceilings
                        )
                    )
                if hooked:
                    written = asyncio.run(data.event_count(app_url)) - events_before
                    plan.notes.append(_backlog(engine, workers, written, hook_url))
    return rows


def webhook_pairs(plan: Plan, pairs: int) -> str:
    """purchase-hot with one endpoint subscribed to everything, then without, `pairs` times
    per engine on one database, each run on a fresh server: the ratio of each pair is taken
    minutes apart at most, so that a busy neighbour weighs on both of its runs alike."""
    scenario = next(s for s in SCENARIOS if s.name == "purchase-hot")
    started = datetime.now(UTC)
    lines = [
        f"Run of {started:%Y-%m-%d %H:%M} UTC: `python -m bench.run --webhook-pairs {pairs}`",
        "",
        f"Machine: {_machine()}.",
        f"Load: wrk, 1 thread, {plan.load.connections} connections, {plan.warmup.seconds:g} s "
        f"warm-up then {plan.load.seconds:g} s measured per run, 1 worker.",
        "",
        "| engine | pair | with (req/s) | without (req/s) | with ÷ without "
        "| CPU µs per purchase, with | without | without ÷ with | deliveries |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    medians = []
    with _catalog() as (tmp, catalog):
        for engine in plan.engines:
            directory = Path(tmp) / engine
            directory.mkdir()
            with _databases(engine, plan, directory) as (app_url, _):
                env = _service_env(plan, app_url, catalog) | {"WEBHOOK_ALLOWED_HOSTS": HOST}
                ratios: list[float] = []
                cpu_ratios: list[float] = []
                for pair in range(1, pairs + 1):
                    with (
                        _service(plan, env, 1, directory / "service.log") as app,
                        receiver() as hook_url,
                    ):
                        events_before = asyncio.run(data.event_count(app_url))
                        endpoint = _subscribe(app.url, hook_url)
                        cpu = _cpu_seconds(app)
                        hooked = _measure(plan, app, scenario.name, scenario)
                        written = asyncio.run(data.event_count(app_url)) - events_before
                        backlog = _backlog(engine, 1, written, hook_url)
                        # Until every delivery is made: what a purchase costs with its events'.
                        hooked_cpu = (_cpu_seconds(app) - cpu) / (written / 2)
                        _unsubscribe(app.url, endpoint)
                    with _service(plan, env, 1, directory / "service.log") as app:
                        events_before = asyncio.run(data.event_count(app_url))
                        cpu = _cpu_seconds(app)
                        plain = _measure(plan, app, scenario.name, scenario)
                        time.sleep(1)
                        written = asyncio.run(data.event_count(app_url)) - events_before
                        plain_cpu = (_cpu_seconds(app) - cpu) / (written / 2)
                    ratio = hooked.rps / plain.rps if plain.rps else 0.0
                    ratios.append(ratio)
                    cpu_ratios.append(plain_cpu / hooked_cpu)
                    print(
                        f"{engine} pair {pair}: {hooked.rps:,.0f} / {plain.rps:,.0f} = "
                        f"{ratio:.2f}; CPU per purchase {hooked_cpu * 1e6:,.0f} / "
                        f"{plain_cpu * 1e6:,.0f} µs; {backlog}",
                        flush=True,
                    )
                    lines.append(
                        f"| {engine} | {pair} | {hooked.rps:,.0f} | {plain.rps:,.0f} "
                        f"| {ratio:.2f} | {hooked_cpu * 1e6:,.0f} | {plain_cpu * 1e6:,.0f} "
                        f"| {plain_cpu / hooked_cpu:.2f} | {backlog.split(': ', 1)[1]} |"
                    )
                medians.append(
                    f"- {engine}: median with ÷ without {statistics.median(ratios):.2f}; "
                    f"CPU per purchase, median without ÷ with {statistics.median(cpu_ratios):.2f}"
                )
    return "\n".join([*lines, "", *medians])


def server_pairs(plan: Plan, rounds: int) -> str:
    """get-hot and purchase-hot on each ASGI server, `rounds` times, on one SQLite database:
    in a round each server runs the bare app then the service, and the servers swap turns
    from one round to the next, so that a busy neighbour weighs on both alike."""
    scenarios = [s for s in SCENARIOS if s.name in ("get-hot", "purchase-hot")]
    started = datetime.now(UTC)
    lines = [
        f"Run of {started:%Y-%m-%d %H:%M} UTC: `python -m bench.run --server-pairs {rounds}`",
        "",
        f"Machine: {_machine()}.",
        f"Load: wrk, 1 thread, {plan.load.connections} connections, {plan.warmup.seconds:g} s "
        f"warm-up then {plan.load.seconds:g} s measured per run, 1 worker, SQLite; the service "
        "at its default settings, its log lines to a file, as `inventory serve` runs it on "
        "granian and as `uvicorn app.main:app` does on uvicorn.",
        "",
        "| round | server | scenario | service req/s | bare req/s | service ÷ bare "
        "| service p99/p50 |",
        "|--:|---|---|--:|--:|--:|--:|",
    ]
    ratios: dict[tuple[str, str], list[float]] = {}
    rates: dict[tuple[str, str], list[float]] = {}
    with _catalog() as (tmp, catalog), _databases("sqlite", plan, Path(tmp)) as (app_url, _):
        env = _service_env(plan, app_url, catalog)
        for round_ in range(1, rounds + 1):
            kinds = SERVER_KINDS if round_ % 2 else SERVER_KINDS[::-1]
            for kind in kinds:
                with serve(
                    "bare ceiling",
                    "bench.ceilings.bare:app",
                    workers=1,
                    env={},
                    health=f"/inventory/{data.HOT}",
                    kind=kind,
                ) as bare:
                    # purchase-hot's bare figure is the bare GET: what the server itself costs.
                    ceiling = _measure(plan, bare, "get-hot", scenarios[0])
                with _service(replace(plan, server=kind), env, 1, Path(tmp) / "service.log") as app:
                    for scenario in scenarios:
                        figures = _measure(plan, app, scenario.name, scenario)
                        ratio = figures.rps / ceiling.rps if ceiling.rps else 0.0
                        ratios.setdefault((kind, scenario.name), []).append(ratio)
                        rates.setdefault((kind, scenario.name), []).append(figures.rps)
                        row = (
                            f"| {round_} | {kind} | {scenario.name} | {figures.rps:,.0f} "
                            f"| {ceiling.rps:,.0f} | {ratio:.2f} | {figures.spread:.1f} |"
                        )
                        print(row, flush=True)
                        lines.append(row)
    medians = [
        f"- {kind}, {scenario}: median service ÷ its own bare app {statistics.median(r):.2f}"
        for (kind, scenario), r in sorted(ratios.items(), key=lambda item: item[0][1])
    ]
    first, second = SERVER_KINDS
    for scenario in scenarios:
        paired = zip(rates[second, scenario.name], rates[first, scenario.name], strict=True)
        medians.append(
            f"- {scenario.name}: median service req/s on {second} ÷ on {first}, round by round, "
            f"{statistics.median(b / a for b, a in paired if a):.2f}"
        )
    return "\n".join([*lines, "", *medians])


def _cpu_seconds(server: Server) -> float:
    """CPU time the server's process has used so far (with one worker, the app's own)."""
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _subscribe(app_url: str, hook_url: str) -> str:
    """Subscribe the receiver to every event; the endpoint's id."""
    body = {"url": hook_url, "events": ["*"], "description": "bench"}
    status, answer = post_json(f"{app_url}/webhooks", body, {"X-API-KEY": API_KEY})
    if status != 201:
        raise RuntimeError(f"subscribing the bench receiver answered {status}: {answer}")
    return str(answer["id"])


def _unsubscribe(app_url: str, endpoint: str) -> None:
    request = urllib.request.Request(
        f"{app_url}/webhooks/{endpoint}", method="DELETE", headers={"X-API-KEY": API_KEY}
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def _backlog(engine: str, workers: int, written: int, hook_url: str) -> str:
    """How far deliveries lagged at the end of the webhook run, and how long they took to
    catch up: the requests are what the ratio measures, the deliveries run behind them."""
    began = time.monotonic()
    delivered = received(hook_url)
    at_end = delivered
    while delivered < written and time.monotonic() - began < 120:
        time.sleep(0.5)
        delivered = received(hook_url)
    waited = time.monotonic() - began
    distinct = received(hook_url, distinct=True)
    return (
        f"Webhook run ({engine}, {workers} worker(s)): {written:,} events written; "
        f"{at_end:,} delivered when the last run ended, {delivered:,} ({distinct:,} distinct) "
        f"after {waited:.0f} s more."
    )


def _scenario_row(
    plan: Plan,
    scenario: Scenario,
    suffix: str,
    engine: str,
    workers: int,
    app: Server,
    app_url: str,
    ceilings: dict[str, Server],
) -> Row:
    label = f"{scenario.name}{suffix} {engine} w{workers}"
    ceiling = _measure(plan, ceilings[scenario.ceiling], scenario.ceiling_scenario, scenario)
    print(f"{label} ceiling: {ceiling.rps:,.0f} req/s", flush=True)
    before = asyncio.run(data.state(app_url))
    if scenario.name == "purchase-replay":
        _prime_replay(app.url)
    figures = _measure(plan, app, scenario.name, scenario)
    row = Row(scenario.name + suffix, engine, workers, figures, scenario.ceiling, ceiling)
    if scenario.purchase:
        time.sleep(0.5)  # let requests wrk gave up on finish their transactions
        after = asyncio.run(data.state(app_url, since=before.last_movement))
        check = data.invariant(before, after)
        row.invariant, row.invariant_ok = check.cell(), check.ok
    print(
        f"{label}: {figures.rps:,.0f} req/s ({row.ratio:.2f}x), p50 {figures.p50_ms:.1f}"
        f" ms, p99 {figures.p99_ms:.1f} ms, errors {figures.errors}, shed {figures.shed}"
        f" {figures.statuses} {row.invariant}",
        flush=True,
    )
    return row


def _measure(plan: Plan, server: Server, name: str, scenario: Scenario) -> Figures:
    args = [name, API_KEY, str(data.PRODUCTS), data.HOT, REPLAY_KEY]
    wrk(server, plan.warmup, args)
    ok = frozenset({200}) if server.name != "inventory" and name.startswith("get") else scenario.ok
    if server.name != "inventory" and name.startswith(("purchase", "reserve")):
        ok = frozenset({201})
    return Figures.of(wrk(server, plan.load, args), scenario, ok)


def _prime_replay(url: str) -> None:
    """The first purchase with the key, so that what wrk sends are replays. The scenario
    before may have left the products circuit open (it answers 503 with Retry-After)."""
    body = {"items": [{"product_id": data.product_id(1), "quantity": 1}], "reference": "bench"}
    headers = {"X-API-KEY": API_KEY, "Idempotency-Key": REPLAY_KEY}
    deadline = time.monotonic() + 60
    while True:
        status, answer = post_json(f"{url}/inventory/purchase", body, headers)
        if status == 201:
            return
        if status != 503 or time.monotonic() > deadline:
            raise RuntimeError(f"priming the replay scenario answered {status}: {answer}")
        time.sleep(1)


def _machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    system = f"{platform.system()} {platform.release()}"
    return f"nproc {os.cpu_count()}, CPU {model}, {system}, load average at start {load}"


def render(rows: list[Row], plan: Plan, *, started: datetime, elapsed: float, command: str) -> str:
    lines = [
        f"Run of {started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s: `{command}`",
        "",
        f"Machine: {_machine()}.",
        f"Load: wrk, 1 thread, {plan.load.connections} connections, {plan.warmup.seconds:g} s "
        f"warm-up then {plan.load.seconds:g} s measured per run, to 127.0.0.1; every service "
        "run follows its ceiling's run immediately.",
        *plan.notes,
        "",
        "| scenario | engine | workers | req/s | p50 ms | p99 ms | p99/p50 | errors | 409s "
        "| shed | ceiling | ceiling req/s | ceiling p99/p50 | ratio | stock + sold = initial |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|---|",
    ]
    for r in rows:
        a = r.app
        lines.append(
            f"| {r.scenario} | {r.engine} | {r.workers} | {a.rps:,.0f} | {a.p50_ms:.1f} "
            f"| {a.p99_ms:.1f} | {a.spread:.1f} | {a.errors} | {a.refused} "
            f"| {a.shed_share:.0%} | {r.ceiling_name} "
            f"| {r.ceiling.rps:,.0f} | {r.ceiling.spread:.1f} | {r.ratio:.2f} | {r.invariant} |"
        )
    lines += ["", "Targets, from this run:", "", *targets(rows)]
    return "\n".join(lines)


def targets(rows: list[Row]) -> list[str]:
    def find(scenario: str, engine: str, workers: int) -> Row | None:
        return next(
            (r for r in rows if (r.scenario, r.engine, r.workers) == (scenario, engine, workers)),
            None,
        )

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    out = []
    for engine in ("sqlite", "postgresql"):
        plain = find("purchase-hot", engine, 1)
        hooked = find("purchase-hot" + WEBHOOK_SUFFIX, engine, 1)
        if plain is not None and hooked is not None:
            share = hooked.ratio / plain.ratio if plain.ratio else 0.0
            out.append(
                f"- purchase-hot with one webhook endpoint ≥ 0.8 × without, {engine}, 1 worker: "
                f"{share:.2f} ({hooked.ratio:.2f} / {plain.ratio:.2f} of the ceiling; "
                f"{hooked.app.rps:,.0f} / {plain.app.rps:,.0f} req/s) — {verdict(share >= 0.8)}"
            )
    for scenario, floors in TARGET_RATIOS.items():
        for engine, floor in floors.items():
            row = find(scenario, engine, 1)
            if row is not None:
                out.append(
                    f"- {scenario} ≥ {floor} × {row.ceiling_name} ceiling, {engine}, 1 worker: "
                    f"{row.ratio:.2f} ({row.app.rps:,.0f} / {row.ceiling.rps:,.0f}) — "
                    f"{verdict(row.ratio >= floor)}"
                )
    failing = [r for r in rows if r.app.errors]
    stalled = [r for r in rows if not r.app.ok]
    out.append(
        "- No errors besides expected 409s: "
        + (
            verdict(True)
            if not failing and not stalled
            else verdict(False)
            + " — "
            + ", ".join(
                [f"{r.scenario}/{r.engine}/w{r.workers}: {r.app.errors}" for r in failing]
                + [
                    f"{r.scenario}/{r.engine}/w{r.workers}: no request completed in the window"
                    for r in stalled
                ]
            )
        )
    )
    wide = [r for r in rows if r.app.p99_ms > 10 * r.app.p50_ms or not r.app.ok]
    out.append(
        "- p99 ≤ 10 × p50 everywhere: "
        + (
            verdict(True)
            if not wide
            else verdict(False)
            + " — "
            + ", ".join(
                f"{r.scenario}/{r.engine}/w{r.workers} "
                f"({r.app.p99_ms:.1f} vs {r.app.p50_ms:.1f} ms; ceiling {r.ceiling.spread:.1f}×)"
                for r in wide
            )
        )
    )
    for r in (r for r in rows if " shed@" in r.scenario):
        out.append(
            f"- {r.scenario}/{r.engine}/w{r.workers}, p99 ≤ 10 × p50 with shedding on: "
            f"{r.app.spread:.1f} ({r.app.p99_ms:.1f} vs {r.app.p50_ms:.1f} ms), "
            f"{r.app.shed_share:.0%} shed — {verdict(r.app.spread <= 10)}"
        )
    broken = [r for r in rows if not r.invariant_ok]
    out.append(
        "- Stock + sold = initial stock, nothing negative, ledger agrees, after every purchase "
        "scenario: " + verdict(not broken)
    )
    one, two = find("get-spread", "postgresql", 1), find("get-spread", "postgresql", 2)
    if one is not None and two is not None:
        scale = two.app.rps / one.app.rps
        ceiling_scale = two.ceiling.rps / one.ceiling.rps
        out.append(
            f"- get-spread on PostgreSQL, 2 workers ≥ 1.5 × 1 worker: {scale:.2f} "
            f"({two.app.rps:,.0f} / {one.app.rps:,.0f}; the bare ceiling scaled "
            f"{ceiling_scale:.2f}) — {verdict(scale >= 1.5)}"
        )
    else:
        out.append("- get-spread 2 workers vs 1: not in this run (`make bench FULL=1`).")
    return out


def write_report(path: Path, report: str) -> None:
    block = f"{BEGIN}\n{report}\n{END}"
    text = path.read_text() if path.exists() else f"# Benchmark results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + block + tail)


if __name__ == "__main__":
    main()
