"""The README's tour runs as pasted: its shell and Python blocks, in order, in one directory,
against ``kittenfs up`` (on a free port, named by $KITTENFS_URL as the tour allows)."""

import os
import re
import subprocess
import sys
from pathlib import Path

from cluster import running_up

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def tour_blocks() -> list[tuple[str, str]]:
    """Return the (language, code) of each block of the section "A two-minute tour"."""
    text = README.read_text()
    start = text.index("## A two-minute tour")
    end = text.index("\n## ", start)
    return BLOCK.findall(text[start:end])


def test_the_tour_has_its_blocks() -> None:
    kinds = [kind for kind, _ in tour_blocks()]
    assert kinds == ["sh", "python", "sh", "sh"]


def test_the_tour_runs_as_pasted(tmp_path: Path) -> None:
    # A user runs the tour in the checkout, which has .venv and kittenfs-data.
    (tmp_path / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    # Every curl fails on an HTTP error, as every other command does on its own errors.
    (tmp_path / ".curlrc").write_text("--fail-with-body\n--silent\n--show-error\n")
    data = tmp_path / "kittenfs-data"
    with running_up(tmp_path, "--workers", "3", "--data", str(data), until="kittenFS is up") as up:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KITTENFS_")}
        env.update(KITTENFS_URL=up.url, CURL_HOME=str(tmp_path), COLUMNS="100")
        # One terminal: what a block exports (PATH from activate, ...) the next one sees.
        state = tmp_path / "terminal.env"
        state.write_text("")
        for number, (kind, code) in enumerate(tour_blocks(), 1):
            script = f". {state}\n{code}\nexport -p > {state}\n"
            if kind == "python":
                script = f". {state}\nexec python - <<'PYTHON'\n{code}PYTHON\n"
            done = subprocess.run(
                ["bash", "-e", "-x", "-c", script],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert done.returncode == 0, (
                f"block {number} ({kind}) exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
