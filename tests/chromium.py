"""Headless Chromium for the browser tests: the Debian package, driven by Playwright."""

import shutil

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# No network beyond loopback here: keep Chromium from calling home (ENVIRONMENT.md).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
