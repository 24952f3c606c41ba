"""Browser tests: Debian's Chromium driven by Playwright, against the local stack serving web/.

Chromium gets a fake microphone fed with a speech recording made at test time (espeak-ng),
and a fresh profile per test. Playwright adds --mute-audio in headless mode, so playback is
observed inside the page (`data-*` on <body> and `window.broadcastDebug`).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_stack.process import ROOT, LocalStackProcess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "docs" / "screenshots"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
TIME_SCALE = 600  # 100 minutes in 10 s: a refresh every ~10 s, the 2-hour cut at 12 s


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spoken recording, as the fake microphone's input (it loops)."""
    assert shutil.which("espeak-ng"), "espeak-ng is installed by `make browser-deps`"
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = "Good evening, and welcome to the hall. This talk is about keeping a broadcast alive for hours."
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True, capture_output=True)  # noqa: S603,S607
    return path


@pytest.fixture(scope="module")
def browser(speech: Path) -> Iterator[Any]:
    """Module-scoped: Playwright's sync API runs an event loop on this thread until it stops, and
    every other test module's asyncio.run() needs the thread free of it."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium is installed by `make browser-deps`"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={speech.resolve()}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def web_stack() -> Iterator[LocalStackProcess]:
    running = LocalStackProcess(time_scale=TIME_SCALE)
    yield running
    running.stop()


def origin(stack: LocalStackProcess) -> str:
    return stack.url.replace("ws://", "http://").rsplit("/", 1)[0]


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """Pages in contexts of their own (a fresh profile each: storage, permissions)."""
    contexts = []

    def make(width: int = 1280, height: int = 800) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.grant_permissions(["microphone"])
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        return page

    yield make
    for context in contexts:
        context.close()


def sign_in_and_go_live(page: Any, stack: LocalStackProcess, name: str = "Ada", language: str = "en") -> str:
    """The speaker page through the development sign-in to a live session; returns the session id."""
    page.goto(f"{origin(stack)}/speaker.html?timeScale={TIME_SCALE}")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#setup:not([hidden])")
    page.select_option("#source", language)
    page.get_by_role("button", name="Go live").click()
    page.wait_for_function("document.body.dataset.state === 'live' && document.body.dataset.sessionId !== ''")
    return page.evaluate("document.body.dataset.sessionId")


def listen(page: Any, stack: LocalStackProcess, session_id: str, language: str) -> None:
    page.goto(f"{origin(stack)}/?session={session_id}&lang={language}&timeScale={TIME_SCALE}")
    page.get_by_role("button", name="Listen").click()
    page.wait_for_function("document.body.dataset.state === 'live'")


def data(page: Any, name: str) -> str:
    return page.evaluate(f"document.body.dataset.{name}")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical accessibility violations on the page as it is (axe-core, injected)."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("async () => (await axe.run(document)).violations")
    return [v for v in found if v["impact"] in ("serious", "critical")]
