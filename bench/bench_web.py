"""Dashboard bundle size: the production build's JavaScript and CSS, raw and gzipped.

    .venv/bin/python -m bench web

Builds `web/` first (`npm ci` when node_modules is missing, then `npm run build`) unless
`web/dist` is newer than every source file. Prints one line per asset and the JS total; gzip is
level 9, as a CDN would serve it. Nothing is asserted (docs/BENCHMARKS.md records the figures).
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
DIST = WEB / "dist"
SOURCES = ("src", "public", "index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json")


def _newest_source() -> float:
    newest = 0.0
    for name in SOURCES:
        path = WEB / name
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        newest = max([newest, *(p.stat().st_mtime for p in files if p.exists())])
    return newest


def build() -> None:
    index = DIST / "index.html"
    if index.is_file() and index.stat().st_mtime >= _newest_source():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: the dashboard cannot be built (Node 20.19+ and npm are needed)")
    if not (WEB / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    subprocess.run([npm, "run", "build"], cwd=WEB, check=True, stdout=subprocess.DEVNULL)


def sizes() -> list[tuple[str, int, int]]:
    """(asset, raw bytes, gzip bytes) for every JS and CSS file of the build."""
    rows = []
    for path in sorted((DIST / "assets").iterdir()):
        if path.suffix in {".js", ".css"}:
            raw = path.read_bytes()
            rows.append((path.name, len(raw), len(gzip.compress(raw, compresslevel=9, mtime=0))))
    return rows


def main() -> None:
    build()
    rows = sizes()
    for name, raw, zipped in rows:
        print(f"  {name:<32} {raw / 1024:8.1f} KiB raw {zipped / 1024:8.1f} KiB gzip")
    js_raw = sum(raw for name, raw, _ in rows if name.endswith(".js"))
    js_gzip = sum(zipped for name, _, zipped in rows if name.endswith(".js"))
    print(f"dashboard JS total: {js_raw / 1024:.1f} KiB raw, {js_gzip / 1024:.1f} KiB gzip ({js_gzip} bytes)")


if __name__ == "__main__":
    main()
