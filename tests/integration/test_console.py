"""The web console in a real browser: Debian's Chromium driven by Playwright,
axe-core (bundled by axe-playwright-python) on every page.

The session's trained project is scored again into a folder of this module's
own (its config: scores, online store, contact log, privacy folder and key file
here; pseudonymisation on), after a campaign is confirmed into its contact log,
so every page has something to show. `propensity console` serves it; the
figures on each page are checked against the files they come from. Each page's
screenshot goes to the test's temporary folder; with
$PROPENSITY_CONSOLE_SCREENSHOT set, the overview's also goes to that path (the
README's picture: `tests/artifacts/console-overview.png`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from serving.api.servers import free_port, spawn, stop, wait_ready
from tests.helpers import (
    BIN,
    TEST_PSEUDONYM_KEY,
    Project,
    Server,
    run_cli,
    write_config,
)

CHROMIUM = Path(os.environ.get("PROPENSITY_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOT_ENV = "PROPENSITY_CONSOLE_SCREENSHOT"
CAMPAIGN = "spring-retention"
CUSTOMER = "C0000003"

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def _browser_missing() -> str | None:
    try:
        import axe_playwright_python  # noqa: F401
        import playwright  # noqa: F401
    except ImportError as exc:
        return f"Playwright or axe-playwright-python is not installed ({exc})"
    if not CHROMIUM.exists():
        return (
            f"no Chromium at {CHROMIUM}: `make setup` installs Debian's chromium "
            "where apt-get can (set PROPENSITY_CHROMIUM to another binary)"
        )
    return None


@dataclass
class Console:
    url: str
    root: Path
    config: Path
    keys: dict[str, str]  # name -> key

    @property
    def output(self) -> Path:
        return self.root / "scores"


def _confirm_campaign(config_path: Path, env: dict[str, str]) -> None:
    """A campaign in the contact log: 40 demo customers (stored as pseudonyms),
    every fifth one in control, confirmed yesterday."""
    from core.config import load_config
    from features.sources.privacy import pseudonymiser
    from serving.outreach.contact_log import open_contact_log

    config = load_config(config_path)
    names = pseudonymiser(config.privacy, env)
    ids = [f"C{i:07d}" for i in range(40)]
    rows = [
        (names.one(c), "control" if i % 5 == 0 else "treatment", 0.5)
        for i, c in enumerate(ids)
    ]
    log = open_contact_log(config.outreach.contact_log)
    with log.confirming(CAMPAIGN, datetime.now(UTC) - timedelta(days=1)) as c:
        c.record("churn", rows, control_share=0.2, contact_cost=1.0)


@pytest.fixture(scope="module")
def console(
    trained: Project, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    if (why := _browser_missing()) is not None:
        pytest.skip(why)
    from serving.api.auth import add_key

    root = tmp_path_factory.mktemp("console")
    config = write_config(
        root / "propensity.yaml",
        trained.events,
        trained.customers,
        privacy={"pseudonymise": True, "dir": str(root / "privacy")},
        online_store={"path": str(root / "online" / "store.sqlite")},
        outreach={"contact_log": str(root / "contacts" / "contacts.sqlite")},
        api={"keys_file": str(root / "keys.txt")},
    )
    keys = {
        name: add_key(root / "keys.txt", name, frozenset(scopes))
        for name, scopes in {
            "viewer": {"score"},
            "marketer": {"outreach"},
            "admin": {"score", "outreach", "admin"},
        }.items()
    }
    env = {**trained.env(), "PROPENSITY_CONFIG": str(config)}
    env.pop("PROPENSITY_API_KEYS")  # only the key file's keys
    _confirm_campaign(config, env)
    done = run_cli(["score"], env)
    assert done.returncode in (0, 3, 8), done.stderr[-3000:]
    port = free_port()
    log = root / "console.log"
    process = spawn([str(BIN / "propensity"), "console", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log, path="/console/signin")
        yield Console(url, root, config, keys)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def browser(console: Console) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


def _page(browser, console: Console, key: str | None):  # noqa: ANN001, ANN202
    """A fresh browser context, signed in with `key` (None: not signed in)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{console.url}/console/")
    if key is not None:
        page.get_by_label("API key").fill(key)
        _follow(page, "button", "Sign in")
    return page


def _follow(page, role: str, name: str) -> None:  # noqa: ANN001
    """Click the link or button and wait for the page it loads: a click returns
    before a busy server answers, and what is read next would be read from the
    page before (the sign-in page's links; axe on a document being replaced)."""
    with page.expect_navigation():
        page.get_by_role(role, name=name).click()


def _no_violations(page, name: str) -> None:  # noqa: ANN001
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    found = results.response["violations"]
    assert not found, f"{name}: axe violations:\n" + results.generate_report()


def _shot(page, name: str, folder: Path) -> None:  # noqa: ANN001
    path = folder / f"console-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    wanted = os.environ.get(SCREENSHOT_ENV)
    if name == "overview" and wanted:
        Path(wanted).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=wanted)


def _cells(page, table_id: str) -> list[list[str]]:  # noqa: ANN001
    # the table waited for: a click returns before a busy server's page has
    # replaced the one before, and counting rows does not wait (on a loaded
    # machine the campaigns table was read from the models page: no rows)
    page.locator(f"#{table_id}").wait_for(state="attached")
    rows = page.locator(f"#{table_id} tbody tr")
    return [
        [c.strip() for c in rows.nth(i).locator("td").all_text_contents()]
        for i in range(rows.count())
    ]


def _number(text: str) -> float:
    return float(re.sub(r"[^0-9.\-]", "", text))


def test_every_page_shows_its_files_figures_and_passes_axe(
    browser, console: Console, tmp_path: Path
) -> None:
    page = _page(browser, console, console.keys["admin"])
    status = json.loads((console.output / "_last_run.json").read_text())
    agg = json.loads((console.output / "_aggregates.json").read_text())

    _follow(page, "link", "Overview")
    assert page.locator("h1").inner_text() == "Overview"
    assert page.locator("#run-state").inner_text() == status["state"]
    assert page.locator("#run-exit").inner_text().startswith(str(status["exit_code"]))
    assert _number(page.locator("#run-scored").inner_text()) == status["rows_scored"]
    skipped = {r[0]: _number(r[1]) for r in _cells(page, "skipped") if len(r) == 2}
    assert skipped == {k: v for k, v in status["rows_skipped"].items()}
    assert [r[0] for r in _cells(page, "steps")] == list(status["seconds"])
    for target, counts in agg["histograms"]["counts"].items():
        shown = [int(r[2]) for r in _cells(page, f"hist-table-{target}")]
        assert shown == counts, target
        assert page.locator(f"svg#hist-{target}[role=img]").count() == 1
    drift = [r[0] for r in _cells(page, "drift-table")]
    assert drift[: len(agg["drift"]["features"])] == [
        f["feature"] for f in agg["drift"]["features"]
    ]
    _no_violations(page, "overview")
    _shot(page, "overview", tmp_path)

    _follow(page, "link", "Models")
    for target, model in agg["models"].items():
        assert page.locator(f"#champion-{target} .version").inner_text() == str(
            model["version"]
        )
        origins = [r[0] for r in _cells(page, f"backtest-{target}")]
        assert origins == [o["origin"] for o in model["backtest"]]
        moves = _cells(page, f"promotions-{target}")
        assert len(moves) == len(model["promotions"]) >= 1
    _no_violations(page, "models")
    _shot(page, "models", tmp_path)

    _follow(page, "link", "Campaigns")
    rows = _cells(page, "campaigns")
    assert [r[0] for r in rows] == [CAMPAIGN]
    assert [_number(rows[0][3]), _number(rows[0][4])] == [32, 8]
    _no_violations(page, "campaigns")
    _shot(page, "campaigns", tmp_path)
    _follow(page, "link", CAMPAIGN)
    assert _number(page.locator("#treatment").inner_text()) == 32
    assert _number(page.locator("#control").inner_text()) == 8
    readout = agg["readouts"][CAMPAIGN]
    groups = {r[0]: int(_number(r[1])) for r in _cells(page, "groups")}
    assert groups == {
        g: readout["groups"][g]["customers"] for g in ("treatment", "control")
    }
    from serving.outreach.readout_report import status as readout_status

    assert (
        page.locator("#readout-status").inner_text().startswith(readout_status(readout))
    )
    _no_violations(page, "campaign")
    _shot(page, "campaign", tmp_path)

    _follow(page, "link", "Customer")
    page.get_by_label("Customer id").fill(CUSTOMER)
    _follow(page, "button", "Look up")
    from core.config import load_config
    from features.sources.privacy import pseudonymiser
    from serving.online_store import open_reader

    config = load_config(console.config)
    stored = pseudonymiser(
        config.privacy, {"PROPENSITY_PSEUDONYM_KEY": TEST_PSEUDONYM_KEY}
    ).one(CUSTOMER)
    assert stored != CUSTOMER
    row = open_reader(config.online_store).lookup([stored])[stored]
    shown = {
        r[0]: _number(r[1])
        for r in _cells(page, "probabilities")
        if r[1][:1] in "0123456789"
    }
    assert shown == {t: pytest.approx(p, abs=5e-5) for t, p in row.scores.items()}
    assert page.locator("table[id^=reasons-]").count() == len(row.scores)
    contacts = _cells(page, "contacts")
    assert [r[1] for r in contacts] == [CAMPAIGN]
    _no_violations(page, "customer")
    _shot(page, "customer", tmp_path)

    _follow(page, "link", "Forget")
    _no_violations(page, "forget")
    _shot(page, "forget", tmp_path)
    page.context.close()


def test_a_wrong_key_shows_no_data(browser, console: Console, tmp_path: Path) -> None:
    page = _page(browser, console, "not-a-key-" + "x" * 30)
    assert "not valid" in page.get_by_role("alert").inner_text()
    assert page.get_by_role("navigation").count() == 0
    _no_violations(page, "sign-in")
    _shot(page, "signin", tmp_path)
    for path in ("overview", "models", "campaigns", "customer", "forget"):
        page.goto(f"{console.url}/console/{path}")
        assert page.url.endswith("/console/signin"), path
        assert page.locator("table").count() == 0
    page.context.close()


def test_pages_follow_the_keys_scopes_and_sign_out_ends_the_session(
    browser, console: Console
) -> None:
    page = _page(browser, console, console.keys["viewer"])
    nav = page.get_by_role("navigation").get_by_role("link").all_inner_texts()
    assert nav == ["Overview", "Models", "Customer"]
    for path in ("campaigns", "forget"):
        response = page.goto(f"{console.url}/console/{path}")
        assert (
            response.status == 403 and "lacks" in page.get_by_role("alert").inner_text()
        )
    cookie = next(
        c for c in page.context.cookies() if c["name"] == "propensity_console"
    )
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    _follow(page, "button", "Sign out")
    assert page.url.endswith("/console/signin")
    page.goto(f"{console.url}/console/overview")
    assert page.url.endswith("/console/signin")
    page.context.close()

    page = _page(browser, console, console.keys["marketer"])
    nav = page.get_by_role("navigation").get_by_role("link").all_inner_texts()
    assert nav == ["Campaigns"]
    page.context.close()


def test_keyboard_reaches_every_control_with_a_visible_focus(
    browser, console: Console
) -> None:
    page = _page(browser, console, console.keys["admin"])
    page.goto(f"{console.url}/console/customer")
    seen = []
    for _ in range(12):
        page.keyboard.press("Tab")
        seen.append(
            page.evaluate(
                "() => { const e = document.activeElement;"
                " const s = getComputedStyle(e);"
                " return [e.tagName, e.id || e.textContent.trim(), s.outlineStyle]; }"
            )
        )
    names = [s[1] for s in seen]
    assert names[0] == "Skip to content"
    assert {"Overview", "Models", "Customer", "Campaigns", "Forget", "Sign out"} <= set(
        names
    )
    assert "customer_id" in names
    focusable = ("A", "BUTTON", "INPUT", "SUMMARY")
    controls = [s for s in seen if s[0] in focusable]
    assert len(controls) >= 9 and all(s[2] not in ("none", "") for s in controls), seen
    page.get_by_label("Customer id").focus()
    page.keyboard.type(CUSTOMER)
    page.keyboard.press("Enter")  # submits the form: no mouse needed
    page.locator("#probabilities").wait_for(timeout=60_000)
    page.context.close()


def test_the_api_serves_the_console_beside_it(server: Server) -> None:
    signin = httpx.get(f"{server.url}/console/signin", timeout=10)
    assert signin.status_code == 200 and 'name="api_key"' in signin.text
    assert "script" not in signin.text.lower()
    away = httpx.get(f"{server.url}/console/overview", timeout=10)
    assert away.status_code == 303 and away.headers["location"].endswith("/signin")
    assert httpx.get(f"{server.url}/metadata", timeout=10).status_code == 401
