"""CI runs exactly the test command the README gives (the second of its two commands)."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Two commands"):]
    blocks = re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)
    assert blocks[0].strip() == "bash quickstart.sh"
    ci_lines = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci_lines == [blocks[1].strip()]
