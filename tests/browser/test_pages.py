"""The pages in real Chromium against the local stack: a whole broadcast through refreshes, faults, interop."""

from __future__ import annotations

import asyncio
import math
import queue
import struct
import threading
import time
from typing import Any

import pytest

from broadcast_client import Frame, Listener, Speaker, Timing
from local_stack import tokens
from local_stack.process import LocalStackProcess
from tests.browser.conftest import (
    SCREENSHOTS,
    TIME_SCALE,
    axe_violations,
    data,
    listen,
    origin,
    sign_in_and_go_live,
)

pytestmark = pytest.mark.browser


def fnv1a(data_: bytes) -> int:
    """The pages' per-frame checksum (web/page.js), computed on this side."""
    value = 0x811C9DC5
    for byte in data_:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def played(page: Any) -> list[tuple[int, int]]:
    return [tuple(x) for x in page.evaluate("window.broadcastDebug.played")]


def sent(page: Any) -> dict[int, int]:
    return dict(tuple(x) for x in page.evaluate("window.broadcastDebug.sent"))


def assert_played_exactly_what_was_sent(listener: Any, speaker_sent: dict[int, int]) -> None:
    frames = played(listener)
    seqs = [seq for seq, _ in frames]
    assert seqs, "nothing played"
    # Every frame from the first one heard onwards, once and in order, byte for byte what was sent.
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert seqs[-1] == max(speaker_sent)
    assert [speaker_sent[seq] for seq in seqs] == [checksum for _, checksum in frames]


def test_browser_broadcast_through_refreshes_every_frame_once_then_end(
    web_stack: LocalStackProcess, new_page: Any
) -> None:
    # GIVEN a speaker page signed in through the local sign-in, its microphone fed recorded speech
    speaker = new_page()
    session_id = sign_in_and_go_live(speaker, web_stack)
    # AND two listener pages in different languages
    listeners = [new_page(390, 844), new_page(390, 844)]
    listen(listeners[0], web_stack, session_id, "es")
    listen(listeners[1], web_stack, session_id, "fr")
    # WHEN the broadcast runs long enough for every connection to refresh twice (100 minutes = 10 s)
    pages = [speaker, *listeners]
    wait_until(lambda: all(int(data(p, "refreshes")) >= 2 for p in pages), 60, "two refreshes on every page")
    # THEN the speaker page counts its listeners per language
    wait_until(lambda: data(speaker, "listeners") == "2", 15, "the speaker's count")
    rows = "[...document.querySelectorAll('#counts tr')]"
    counts = speaker.evaluate(f"Object.fromEntries({rows}.map(r => [r.dataset.language, r.cells[1].textContent]))")
    assert counts == {"es": "1", "fr": "1"}
    # AND once the microphone is muted, every listener has played every frame sent since it joined
    speaker.get_by_role("button", name="Mute microphone").click()
    time.sleep(0.5)
    speaker_sent = sent(speaker)
    assert int(data(speaker, "framesSent")) == len(speaker_sent) > 0
    for page in listeners:
        wait_until(lambda page=page: played(page) and played(page)[-1][0] == max(speaker_sent), 15, "the last frame")
        assert_played_exactly_what_was_sent(page, speaker_sent)
        assert data(page, "gaps") == "0"
        assert int(data(page, "frames")) == len(played(page))
    # AND End tells both listener pages, in words
    speaker.get_by_role("button", name="End session").click()
    for page in listeners:
        page.wait_for_function("document.body.dataset.state === 'ended'")
        assert "ended" in page.locator("#status").inner_text()
    speaker.wait_for_function("document.body.dataset.state === 'ended'")


def test_browser_listener_connection_deleted_comes_back_and_reports_the_gap(
    web_stack: LocalStackProcess, new_page: Any
) -> None:
    speaker = new_page()
    session_id = sign_in_and_go_live(speaker, web_stack, name="Grace")
    listener = new_page(390, 844)
    listen(listener, web_stack, session_id, "de")
    wait_until(lambda: int(data(listener, "frames")) >= 5, 20, "frames")
    # WHEN its connection is deleted through the management API (not a planned refresh)
    connection_id = web_stack.log_lines("joinSession")[-1].split()[2]
    web_stack.management_client().delete_connection(ConnectionId=connection_id)
    # THEN it goes reconnecting, then live again by itself
    listener.wait_for_function("window.broadcastDebug.events.includes('reconnecting')")
    listener.wait_for_function("document.body.dataset.state === 'live'")
    heard = int(data(listener, "frames"))
    wait_until(lambda: int(data(listener, "frames")) >= heard + 10, 20, "frames after the reconnect")
    # AND what it missed is exactly what it reports in data-gaps
    seqs = [seq for seq, _ in played(listener)]
    missing = (seqs[-1] - seqs[0] + 1) - len(seqs)
    assert int(data(listener, "gaps")) == missing
    assert seqs == sorted(set(seqs))
    speaker.get_by_role("button", name="End session").click()


def tone(seq: int) -> bytes:
    """200 ms of pcm_s16le/16000/1."""
    start = seq * 3200
    samples = (int(6000 * math.sin(2 * math.pi * 440 * (start + i) / 16000)) for i in range(3200))
    return b"".join(struct.pack("<h", sample) for sample in samples)


def in_thread(coroutine: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run a Python client beside the pages: Playwright's sync API owns this thread's event loop."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = asyncio.run(coroutine)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def finished(thread: threading.Thread, outcome: dict[str, Any], timeout: float) -> Any:
    thread.join(timeout)
    assert not thread.is_alive(), "the Python client did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def test_browser_listener_hears_the_python_speaker(web_stack: LocalStackProcess, new_page: Any) -> None:
    session: queue.Queue[str] = queue.Queue()
    listening, heard_all = threading.Event(), threading.Event()

    async def speak() -> dict[int, int]:
        speaker = Speaker(web_stack.url, lambda: tokens.issue("py-speaker"), timing=Timing(time_scale=TIME_SCALE))
        await speaker.connect()
        assert speaker.session_id
        session.put(speaker.session_id)
        await asyncio.to_thread(listening.wait, 30)
        checksums = {}
        for _ in range(25):
            audio = tone(speaker.next_seq)
            checksums[await speaker.send_audio(audio)] = fnv1a(audio)
            await asyncio.sleep(0.2)
        await asyncio.to_thread(heard_all.wait, 30)
        await speaker.end()
        return checksums

    thread, outcome = in_thread(speak())
    page = new_page(390, 844)
    listen(page, web_stack, session.get(timeout=30), "it")
    listening.set()
    wait_until(lambda: played(page) and played(page)[-1][0] == 24, 30, "frame 24")
    heard_all.set()
    checksums = finished(thread, outcome, 30)
    assert_played_exactly_what_was_sent(page, checksums)
    page.wait_for_function("document.body.dataset.state === 'ended'")


def test_browser_speaker_heard_by_the_python_listener(web_stack: LocalStackProcess, new_page: Any) -> None:
    page = new_page()
    session_id = sign_in_and_go_live(page, web_stack, name="Hedy")

    async def hear() -> list[tuple[int, int]]:
        heard: list[tuple[int, int]] = []
        async with Listener(web_stack.url, session_id, "pt", timing=Timing(time_scale=TIME_SCALE)) as listener:
            async for item in listener:
                if isinstance(item, Frame):
                    heard.append((item.seq, fnv1a(item.audio)))
                    if len(heard) == 20:
                        break
        return heard

    heard = finished(*in_thread(hear()), 60)
    speaker_sent = sent(page)
    assert [seq for seq, _ in heard] == list(range(heard[0][0], heard[0][0] + 20))
    assert [speaker_sent[seq] for seq, _ in heard] == [checksum for _, checksum in heard]
    page.get_by_role("button", name="End session").click()


def test_browser_pages_have_no_serious_accessibility_violations_and_screenshots(
    web_stack: LocalStackProcess, new_page: Any
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for width, height, size in ((390, 844, "phone"), (1280, 800, "desktop")):
        speaker = new_page(width, height)
        speaker.goto(f"{origin(web_stack)}/speaker.html")
        assert axe_violations(speaker) == []
        session_id = sign_in_and_go_live(speaker, web_stack, name=f"Ada {size}")
        speaker.wait_for_function("document.body.dataset.listeners !== undefined")
        assert axe_violations(speaker) == []
        listener = new_page(width, height)
        listener.goto(f"{origin(web_stack)}/?session={session_id}&lang=es")
        assert axe_violations(listener) == []
        listen(listener, web_stack, session_id, "es")
        assert axe_violations(listener) == []
        speaker.wait_for_function("document.body.dataset.listeners === '1'")
        speaker.screenshot(path=str(SCREENSHOTS / f"speaker-{size}.png"), full_page=True)
        listener.screenshot(path=str(SCREENSHOTS / f"listener-{size}.png"), full_page=True)
        speaker.get_by_role("button", name="End session").click()


def test_browser_listener_unknown_session_says_so(web_stack: LocalStackProcess, new_page: Any) -> None:
    page = new_page(390, 844)
    page.goto(f"{origin(web_stack)}/?session=silent-otter-001&lang=es")
    page.get_by_role("button", name="Listen").click()
    page.wait_for_function("document.body.dataset.state === 'failed'")
    assert "No live session" in page.locator("#status").inner_text()
