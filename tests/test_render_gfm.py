"""What ghapp quotes on a pull request (hold reasons quoting `.github/preview.yml`, module outputs, errors) rendered
by cmark-gfm, GitHub's own Markdown renderer: a code span stays one code span, inline and in a table cell, whatever
the quoted text holds. Attacked on 2026-12-01 (docs/security.md); it held."""

from __future__ import annotations

import re

import cmarkgfm
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ghapp.core.render import md_code

pytestmark = pytest.mark.fast

PIECES = [
    "`",
    "``",
    "|",
    "\\",
    "\\|",
    "\n",
    "\r",
    "<",
    ">",
    "[",
    "]",
    "(",
    ")",
    "!",
    "@octocat",
    "*",
    "_",
    "#",
    "&",
    "x",
    " ",
    "http://e.example/",
    "<img src=x>",
    "\u2028",
    "\x0b",
    "\x0c",
    "\u0085",
    "~",
    ":",
    "-",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=16).map("".join))
def test_quoted_text_stays_one_code_span_inline_and_in_a_table_cell(text):
    markdown = f"| output | value |\n|---|---|\n| `k` | {md_code(text)} |\n\n> {md_code(text)} tail\n"
    rendered = cmarkgfm.github_flavored_markdown_to_html(markdown)
    cells = re.findall(r"<td>(.*?)</td>", rendered, re.S)
    assert len(cells) == 2 and cells[1].startswith("<code>") and cells[1].endswith("</code>"), rendered
    assert rendered.count("<code>") == 3 and "<a" not in rendered and "<img" not in rendered, rendered
