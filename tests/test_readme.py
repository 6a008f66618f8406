"""The README's usage example runs as written."""
import pathlib
import re


def test_readme_python_example_runs(capsys):
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README.md has no ```python example"
    exec(compile(blocks[0], "README.md", "exec"), {})  # noqa: S102 - our own documentation
    printed = capsys.readouterr().out
    assert "44998601" in printed  # the paper's best CLSTM net, counted as docs/models.md derives it
