"""Command-line client: `listen` prints frames and events; `speak` streams a WAV file or a tone.

    python -m broadcast_client speak ws://127.0.0.1:8080/live --token "$(make -s token)" --tone --seconds 30
    python -m broadcast_client listen ws://127.0.0.1:8080/live golden-eagle-427 es

Works against any URL, local or deployed (`wss://...amazonaws.com/live`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Iterator

from broadcast_client import Event, Frame, Listener, Speaker, Timing

FRAME_MILLIS = 200


def tone_frames(rate: int = 16000, hz: float = 440.0) -> Iterator[bytes]:
    """Endless 16-bit mono PCM sine tone, FRAME_MILLIS per frame."""
    samples = rate * FRAME_MILLIS // 1000
    n = 0
    while True:
        yield b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * (n + i) / rate))) for i in range(samples)
        )
        n += samples


def wav_frames(path: str) -> Iterator[bytes]:
    """The WAV file's PCM data, FRAME_MILLIS per frame (each frame stays under the 24,576-character limit)."""
    with wave.open(path, "rb") as wav:
        per_frame = wav.getframerate() * FRAME_MILLIS // 1000
        max_bytes = 18_000  # base64 of 18,000 bytes is 24,000 characters
        per_frame = max(1, min(per_frame, max_bytes // (wav.getsampwidth() * wav.getnchannels())))
        while data := wav.readframes(per_frame):
            yield data


def token_provider(args: argparse.Namespace):
    """A fresh token per connection: from --token-command when given (e.g. a Cognito refresh), else --token."""
    if args.token_command:

        def run() -> str:
            # The user's own command line, run as they wrote it (like git's credential helpers).
            done = subprocess.run(args.token_command, shell=True, check=True, capture_output=True, text=True)  # noqa: S602
            return done.stdout.strip()

        return run
    token = args.token or os.environ.get("BROADCAST_TOKEN")
    if not token:
        sys.exit("speak needs --token, --token-command or BROADCAST_TOKEN")
    return lambda: token


def _print(kind: str, **fields: object) -> None:
    print(json.dumps({"t": round(time.time(), 3), "event": kind, **fields}), flush=True)


async def speak(args: argparse.Namespace) -> int:
    timing = Timing(time_scale=args.time_scale)
    speaker = Speaker(
        args.url, token_provider(args), source_language=args.language, session_id=args.session, timing=timing
    )
    await speaker.connect()
    _print("session", sessionId=speaker.session_id)
    frames = wav_frames(args.wav) if args.wav else tone_frames()
    started = time.monotonic()
    sent = 0

    async def events() -> None:
        async for item in speaker:
            if isinstance(item, Event):
                _print(item.type, **item.data)

    printer = asyncio.create_task(events())
    for chunk in frames:
        if args.seconds and time.monotonic() - started >= args.seconds:
            break
        await speaker.send_audio(chunk)
        sent += 1
        await asyncio.sleep(max(0.0, started + sent * FRAME_MILLIS / 1000 - time.monotonic()))
    _print("done", framesSent=sent, refreshes=speaker.stats.refreshes)
    if args.end:
        await speaker.end()
    else:
        await speaker.close()
    printer.cancel()
    return 0


async def listen(args: argparse.Namespace) -> int:
    timing = Timing(time_scale=args.time_scale)
    listener = Listener(args.url, args.session, args.language, timing=timing)
    await listener.connect()
    _print("joined", **{k: v for k, v in listener.joined.items() if k != "type"})
    frames = 0
    async for item in listener:
        if isinstance(item, Frame):
            frames += 1
            if not args.quiet:
                _print("audio", seq=item.seq, bytes=len(item.audio))
        else:
            _print(item.type, **item.data)
    _print("done", framesDelivered=frames, lost=listener.buffer.stats.lost, refreshes=listener.stats.refreshes)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m broadcast_client", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--time-scale", type=float, default=1.0, help="match the local stack's TIME_SCALE")
    sub = parser.add_subparsers(dest="command", required=True)
    speak_cmd = sub.add_parser("speak", help="create a session (or take one over) and stream audio into it")
    speak_cmd.add_argument("url")
    speak_cmd.add_argument("--token", help="a speaker JWT (Cognito ID or access token)")
    speak_cmd.add_argument("--token-command", help="a shell command printing a fresh token, run for every connection")
    speak_cmd.add_argument("--language", default="en", help="source language (default en)")
    speak_cmd.add_argument("--session", help="take over this session as its speaker instead of creating one")
    source = speak_cmd.add_mutually_exclusive_group()
    source.add_argument("--wav", help="a PCM WAV file to stream")
    source.add_argument("--tone", action="store_true", help="a generated 440 Hz tone (the default)")
    speak_cmd.add_argument(
        "--seconds", type=float, default=0, help="stop after this many seconds (0: the whole source)"
    )
    speak_cmd.add_argument("--end", action="store_true", help="end the session when done")
    listen_cmd = sub.add_parser("listen", help="join a session and print what arrives")
    listen_cmd.add_argument("url")
    listen_cmd.add_argument("session")
    listen_cmd.add_argument("language", help="target language, e.g. es")
    listen_cmd.add_argument("--quiet", action="store_true", help="print events only, not every frame")
    args = parser.parse_args()
    if args.command == "speak" and not args.wav and not args.seconds:
        args.seconds = 30.0  # an endless tone needs a stop
    try:
        sys.exit(asyncio.run(speak(args) if args.command == "speak" else listen(args)))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
