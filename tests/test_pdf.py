"""helpers.pdf: what the whole-book PDF must hold, counted from the sources (the PDF itself is
checked by tests/pdf after `make pdf`)."""

from pathlib import Path

import nbformat
import pytest

from helpers import pdf

ROOT = Path(__file__).resolve().parents[1]


def _notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def _code(outputs, tags=()):
    cell = nbformat.v4.new_code_cell("plot()", metadata={"tags": list(tags)})
    cell.outputs = outputs
    return cell


PNG = nbformat.v4.new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Fig>"})
TEXT = nbformat.v4.new_output("execute_result", data={"text/plain": "0.5"}, execution_count=1)
HTML = nbformat.v4.new_output("display_data", data={"text/html": "<b>x</b>"})


def test_figure_outputs_counts_images_the_latex_build_shows():
    nb = _notebook(_code([PNG, TEXT]), _code([PNG, PNG]), _code([HTML]),
                   _code([PNG], tags=["remove-output"]), _code([PNG], tags=["remove-cell"]),
                   _code([PNG], tags=["hide-input"]),
                   nbformat.v4.new_markdown_cell("![](not-an-output.png)"))
    assert pdf.figure_outputs(nb) == 4


def test_image_rows_skips_soft_masks():
    listing = """page   num  type   width height color comp bpc  enc interp  object ID
--------------------------------------------------------------------------------------------
   3     0 image     800   600  rgb     3   8  image  no        12  0
   3     1 smask     800   600  gray    1   8  image  no        12  0
   9     2 image     640   480  rgb     3   8  image  no        20  0
"""
    assert pdf.image_rows(listing) == 2
    assert pdf.image_rows(listing.split("\n", 2)[0]) == 0


def test_toc_pages_start_at_the_root_and_every_page_has_a_title():
    pages = pdf.toc_pages(ROOT)
    assert pages[0] == "book/intro" and len(pages) == len(set(pages)) > 10
    assert pdf.page_title(ROOT, "book/claims_ledger") == "Claims ledger"
    for page in pages:
        assert pdf.page_title(ROOT, page), page


def test_page_title_needs_a_heading(tmp_path):
    (tmp_path / "untitled.md").write_text("---\ntitle: x\n---\n\nNo heading.\n")
    with pytest.raises(ValueError, match="no '# ' title"):
        pdf.page_title(tmp_path, "untitled")


def test_check_names_chapters_missing_from_an_empty_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert pdf.main(["check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "never executes a chapter" in err and "make test" in err
    assert "book/optimisation/implicit_bias.md" in err
    assert pdf.main(["nonsense"]) == 2
