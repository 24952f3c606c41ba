"""sendAudio: relay one audio frame from the speaker to every listener (no reply on success)."""

from __future__ import annotations

from broadcast import service
from broadcast.routing import route

handler = route(service.send_audio)
