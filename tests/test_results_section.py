"""The README's BUSI results block is generated from the committed runs, not typed."""
from __future__ import annotations

from pathlib import Path

import pytest

from mtloca_lib import results_section as rs

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (REPO / "runs" / "busi").is_dir(), reason="no committed BUSI runs")
def test_readme_block_matches_the_committed_runs():
    assert rs.readme_block() == rs.render(), (
        "README.md's BUSI results block differs from the runs: run `python -m mtloca_lib.results_section`"
    )


def test_render_names_its_sources(tmp_path):
    # an empty tree renders the ablation skeleton only, marking every row as not complete
    text = rs.render(root=tmp_path)
    assert "Table 6" in text and text.count("not complete yet") == 6
    assert "Tables 2 and 3" not in text


def test_update_readme_needs_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no block\n")
    with pytest.raises(ValueError, match="busi-results"):
        rs.update_readme(readme, root=tmp_path)
    readme.write_text(f"a\n{rs.BEGIN}\nold\n{rs.END}\nb\n")
    assert rs.update_readme(readme, root=tmp_path)
    assert readme.read_text().startswith("a\n") and readme.read_text().endswith(f"{rs.END}\nb\n")
    assert rs.readme_block(readme) == rs.render(root=tmp_path)
