"""Headless Chromium (Debian's, installed by `make tools`) rendering a page the way a reader's
browser does: what it drew, checked in the page itself, and a screenshot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

#: Run in the page once it loaded: per figure, whether the browser decoded its image and how
#: much of it is not background (drawn into a canvas: data: URIs are same-origin).
PROBE = """<script>
window.addEventListener('load', () => {
  const out = [];
  for (const fig of document.querySelectorAll('figure')) {
    const img = fig.querySelector('img');
    let ink = 0;
    if (img && img.naturalWidth) {
      const c = document.createElement('canvas');
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      const g = c.getContext('2d'); g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] < 700) n++;
      ink = n / (c.width * c.height);
    }
    out.push({id: fig.id, points: +fig.dataset.points, width: img ? img.naturalWidth : 0,
              shown: img ? img.getBoundingClientRect().width : 0, ink: ink});
  }
  const p = document.createElement('pre');
  p.id = 'probe'; p.textContent = JSON.stringify(out);
  document.body.appendChild(p);
});
</script>"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def chromium() -> str | None:
    return shutil.which("chromium")


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium() or "chromium", *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def render_page(page: Path, screenshot: Path) -> list[dict[str, Any]]:
    """Open ``page`` in headless Chromium: what each figure drew (``PROBE``), and a full-page
    screenshot written to ``screenshot``."""
    with tempfile.TemporaryDirectory() as tmp:
        probed = Path(tmp) / "probed.html"
        probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        dom = _run(["--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
                   Path(tmp) / "a")
        shot = _run([f"--screenshot={screenshot}", "--window-size=1200,5000",
                     "--virtual-time-budget=10000", page.as_uri()], Path(tmp) / "b")
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    if found is None:
        raise AssertionError(f"Chromium ran no probe: {dom.stderr[-2000:]}")
    if shot.returncode != 0 or not screenshot.is_file():
        raise AssertionError(f"Chromium took no screenshot: {shot.stderr[-2000:]}")
    return json.loads(found.group(1).replace("&quot;", '"'))
