"""Helpers of the HTML page tests: an HTML parser for the parts the tests look at, PNG decoding, and
headless Chromium driven through the DevTools protocol over ``--remote-debugging-pipe`` (NUL-separated
JSON on file descriptors 3 and 4): no websocket library and no TCP port are needed.

The ``chromium`` fixture (tests/conftest.py) starts one browser per test.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

PNG_PREFIX = "data:image/png;base64,"


class Page(HTMLParser):
    """The parts of a report the tests look at: tags, ids, URL attributes, headings and table rows."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.ids: list[str] = []
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.imgs: list[dict[str, str]] = []
        self.h2: dict[str, str] = {}  # section id -> heading text
        self.rows: list[dict[str, Any]] = []  # {"section", "attrs", "cells": [(text, attrs)]}
        self._section = ""
        self._h2: list[str] | None = None
        self._row: dict[str, Any] | None = None
        self._cell: tuple[list[str], dict[str, str]] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attr_list: list[tuple[str, str | None]]) -> None:
        attrs_ = {k: v or "" for k, v in attr_list}
        self.tags[tag] += 1
        if "id" in attrs_:
            self.ids.append(attrs_["id"])
        for name in ("src", "href", "srcset", "action", "data", "poster", "background"):
            if name in attrs_:
                self.urls.append((tag, name, attrs_[name]))
        if tag == "img":
            self.imgs.append(attrs_)
        elif tag == "section":
            self._section = attrs_.get("id", "")
        elif tag == "h2":
            self._h2 = []
        elif tag == "tr":
            self._row = {"section": self._section, "attrs": attrs_, "cells": []}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ([], attrs_)

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._h2 is not None:
            self.h2[self._section] = " ".join("".join(self._h2).split())
            self._h2 = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row["cells"].append((" ".join("".join(self._cell[0]).split()), self._cell[1]))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "section":
            self._section = ""

    def handle_data(self, data: str) -> None:
        if self._h2 is not None:
            self._h2.append(data)
        if self._cell is not None:
            self._cell[0].append(data)

    def section_rows(self, section: str) -> list[list[str]]:
        return [[text for text, _ in r["cells"]] for r in self.rows if r["section"] == section]

    def metric_cells(self) -> dict[str, tuple[str, str]]:
        """metric key -> (label, value text)."""
        return {r["attrs"]["data-metric"]: (r["cells"][0][0], r["cells"][1][0])
                for r in self.rows if "data-metric" in r["attrs"]}


def decode_png(src: str) -> Image.Image:
    """The fully decoded image of a ``data:image/png;base64,`` URI (fails on anything else)."""
    assert src.startswith(PNG_PREFIX), src[:60]
    raw = base64.b64decode(src[len(PNG_PREFIX):], validate=True)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    Image.open(io.BytesIO(raw)).verify()  # chunk structure and CRCs
    img = Image.open(io.BytesIO(raw))
    img.load()  # decompresses every pixel
    assert img.format == "PNG"
    return img


CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
CHROMIUM = next((p for p in (shutil.which(c) for c in CHROMIUM_CANDIDATES) if p), None)
# CI installs Chromium (.ci/run) and must not skip the browser check; elsewhere it is skipped when missing.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="Chromium is not installed (/usr/bin/chromium; on Debian: apt-get install chromium)")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--window-size=1280,900")
#: Guard against a hung browser (not a performance assertion).
HANG_TIMEOUT = 90.0


class Chromium:
    """Headless Chromium driven through the DevTools protocol over ``--remote-debugging-pipe``."""

    def __init__(self, profile: Path, log: Path) -> None:
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def child() -> None:  # in the child: its fd 3 reads our commands, its fd 4 carries replies
            r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
            w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.log = log
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(
                [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, close_fds=False,
                preexec_fn=child)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._r], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"Chromium did not answer; its log:\n{self.log.read_text(errors='replace')}")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise AssertionError(f"Chromium closed the pipe; its log:\n{self.log.read_text(errors='replace')}")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + HANG_TIMEOUT
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                assert "error" not in reply, (method, reply["error"])
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict[str, Any]:
        deadline = time.monotonic() + HANG_TIMEOUT
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            seen = len(self.events)
            self.events.append(self._read_message(deadline))

    def open(self, url: str) -> tuple[str, list[dict[str, Any]]]:
        """Load ``url`` in a new tab; its session id and the events recorded for that tab so far."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Page.navigate", {"url": url}, session)
        self.wait_for("Page.loadEventFired", session)
        return session, [e for e in self.events if e.get("sessionId") == session]

    def evaluate(self, expression: str, session: str) -> Any:
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        assert "exceptionDetails" not in reply, reply
        return reply["result"].get("value")

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.send("Browser.close")
            self.proc.wait(timeout=30)
        except (AssertionError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._w)
            os.close(self._r)



PAGE_STATE = """(() => ({
  title: document.title,
  images: Array.from(document.images).map(i => ({
    scheme: i.currentSrc.split(',')[0], complete: i.complete, naturalWidth: i.naturalWidth,
    naturalHeight: i.naturalHeight, shownWidth: i.getBoundingClientRect().width})),
  sections: Array.from(document.querySelectorAll('section h2')).map(h => h.textContent.trim()),
  scripts: document.scripts.length,
  pageWidth: document.documentElement.scrollWidth,
  viewportWidth: window.innerWidth,
  resources: performance.getEntriesByType('resource').map(e => e.name),
}))()"""


def problems(events: list[dict[str, Any]], page_url: str) -> list[str]:
    """Console errors, uncaught exceptions, logged errors, failed loads and any request but the page itself."""
    out = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            out.append(f"console.{p['type']}: {p.get('args')}")
        elif method == "Runtime.exceptionThrown":
            out.append(f"exception: {p.get('exceptionDetails')}")
        elif method == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            out.append(f"log {p['entry']['level']}: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif method == "Network.loadingFailed":
            out.append(f"load failed: {p.get('errorText')}")
        elif method == "Network.requestWillBeSent":
            url = p["request"]["url"]
            if url != page_url and not url.startswith("data:image/png;base64,"):
                out.append(f"request: {url[:200]}")
    return out
