"""bench/sections.py: several bench scripts render their own part of one markdown file (docs/results.md)."""

import importlib.util
from pathlib import Path

SPEC = importlib.util.spec_from_file_location("sections", Path(__file__).parents[1] / "bench" / "sections.py")
assert SPEC and SPEC.loader
sections = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(sections)


def test_a_section_is_replaced_in_place_and_the_others_kept(tmp_path):
    doc = tmp_path / "results.md"
    sections.write_section(doc, "cross_arch", "bench/cross_arch.py", ["# study", "old table"])
    sections.write_section(doc, "cross_method", "bench/methods.py", ["## methods", "first"])
    sections.write_section(doc, "cross_arch", "bench/cross_arch.py", ["# study", "new table"])
    text = doc.read_text()
    assert "old table" not in text and text.count("new table") == 1
    assert text.index("new table") < text.index("## methods")  # replaced where it was, not appended
    sections.write_section(doc, "cross_method", "bench/methods.py", ["## methods", "second"])
    text = doc.read_text()
    assert "first" not in text and "second" in text and "new table" in text
    assert text.count("<!-- section ") == 2 and text.count("<!-- /section ") == 2


def test_text_outside_the_sections_is_kept(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text("hand-written preface\n")
    sections.write_section(doc, "cross_method", "bench/methods.py", ["table"])
    sections.write_section(doc, "cross_method", "bench/methods.py", ["table 2"])
    assert doc.read_text().startswith("hand-written preface\n\n<!-- section cross_method")
    assert "table 2" in doc.read_text() and "table\n" not in doc.read_text()
