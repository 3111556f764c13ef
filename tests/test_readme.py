"""The README as a front door: its cluster commands work as written, its links lead somewhere.

The block between ``<!-- cluster-commands:begin/end -->`` runs in ``bash`` in a new shell (no
venv on PATH, a fresh HOME) with only the paths and ports replaced: /data/photos, /data/labels
and /models/m2fp by test dirs, the head's ports by free ones (other Rays may run on this
machine). The head is stopped by killing the processes of its own temp dir (``ray stop`` would
stop every Ray of the user).

Every relative link of README.md and docs/ points at a file that exists, and a ``#anchor`` at a
heading of that file (GitHub's heading ids); the README stays at most 200 lines.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "pipeline"))
from cluster import free_ports, kill_processes_using  # noqa: E402

MAX_README_LINES = 200
FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def prose_lines(path: Path) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks, inline code removed."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(re.sub(r"`[^`]*`", "", line))
    return lines


def heading_ids(path: Path) -> set[str]:
    """GitHub's ids of the file's headings: lower case, punctuation dropped, spaces as hyphens."""
    ids: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            ids.add(slug if n == 0 else f"{slug}-{n}")
    return ids


def broken_links(path: Path) -> list[str]:
    """The relative links of ``path`` whose file or heading does not exist."""
    broken = []
    for line in prose_lines(path):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                broken.append(f"{path.relative_to(REPO)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in heading_ids(dest):
                broken.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    return broken


def test_readme_and_docs_links_resolve():
    files = markdown_files()
    assert len(files) > 5
    broken = [b for f in files for b in broken_links(f)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_is_a_front_door():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most {MAX_README_LINES})"
    linked = {t.partition("#")[0] for line in prose_lines(REPO / "README.md") for t in LINK.findall(line)}
    docs = {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")}
    assert docs <= linked, f"docs pages the README does not link: {sorted(docs - linked)}"


def cluster_commands() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- cluster-commands:begin -->\s*```bash\n(.*?)```\s*<!-- cluster-commands:end -->", text, re.S)
    assert m, "README.md has the cluster-commands block"
    return m.group(1)


@pytest.mark.cluster
@pytest.mark.timeout(600)
def test_readme_cluster_commands_in_a_new_shell(tmp_path, tiny_model_dir):
    from PIL import Image
    from skimage import data

    photos, labels = tmp_path / "photos", tmp_path / "labels"
    photos.mkdir()
    Image.fromarray(data.astronaut()).resize((128, 128)).save(photos / "astronaut.jpg")
    Image.fromarray(data.coffee()).resize((96, 64)).save(photos / "coffee.png")
    gcs, dash, client, agent, metrics = free_ports(5)
    ray_tmp = tempfile.mkdtemp(prefix="rr", dir="/tmp")
    script = (
        cluster_commands()
        .replace("/data/photos", str(photos))
        .replace("/data/labels", str(labels))
        .replace("/models/m2fp", str(tiny_model_dir))
        .replace("127.0.0.1:8265", f"127.0.0.1:{dash}")
        .replace(
            "ray start --head",
            f"ray start --head --port={gcs} --dashboard-port={dash} --ray-client-server-port={client} "
            f"--dashboard-agent-listen-port={agent} --metrics-export-port={metrics} --temp-dir={ray_tmp} "
            "--node-ip-address=127.0.0.1",
        )
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {  # a new login shell: no venv on PATH, nothing of this test process's Ray settings
        "HOME": str(home),
        "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if ".venv" not in p),
        "LANG": "C.UTF-8",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    try:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=540
        )
    finally:
        kill_processes_using(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    log = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, log
    assert "succeeded" in log.lower(), log
    rows = pq.read_table(labels).to_pylist()
    assert sorted(Path(r["uri"]).name for r in rows) == ["astronaut.jpg", "coffee.png"]
    assert all(r["status"] == "ok" for r in rows)
