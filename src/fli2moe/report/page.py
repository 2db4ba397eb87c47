"""The report's text: sections of claim, verdicts, figures and tables, as markdown and as offline HTML.

The HTML has no script and no external resource: its images are files in `figures/` next to it, named
by relative paths, so the folder opens anywhere (and renders on GitHub as report.md).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from fli2moe.report.claims import Verdict
from fli2moe.report.tables import Table

STYLE = """
body { font-family: Georgia, serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1, h2, h3 { font-family: Helvetica, Arial, sans-serif; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
table { border-collapse: collapse; margin: 1em 0 0.3em; font-size: 0.85em; font-family: Helvetica, Arial, sans-serif; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.3em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; } th { background: #f4f4f4; }
td.num, th.num { text-align: right; white-space: nowrap; } td.label { text-align: left; }
p.note { font-size: 0.8em; color: #666; margin-top: 0; }
.verdict { padding: 0.4em 0.8em; border-left: 5px solid #999; background: #f8f8f8; margin: 0.5em 0; }
.supported { border-color: #27ae60; } .not-supported { border-color: #c0392b; }
.mixed, .inconclusive { border-color: #e67e22; }
"""


@dataclass
class Section:
    title: str
    claim: str  # the paper's claim this section tests, in one sentence
    verdicts: list[Verdict] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (path relative to reports/, caption)
    tables: list[Table] = field(default_factory=list)
    text: str = ""  # how the numbers were produced, for a reader who does not know the pipeline


def verdict_table(sections: list[Section]) -> Table:
    """Every verdict of the report in one table: the page's abstract."""
    return Table("Verdicts at a glance", ["claim", "on", "verdict"],
                 [[s.title, v.subject, v.status] for s in sections for v in s.verdicts], align_left=3)


def markdown(title: str, intro: str, sections: list[Section]) -> str:
    lines = [f"# {title}", "", intro, "", verdict_table(sections).markdown(), ""]
    for section in sections:
        lines += [f"## {section.title}", "", f"*Claim:* {section.claim}", ""]
        lines += [f"- **{v.status}** — {v.subject}: {v.sentence}" for v in section.verdicts] + [""]
        if section.text:
            lines += [section.text, ""]
        for path, caption in section.figures:
            lines += [f"![{caption}]({path})", "", f"_{caption}_", ""]
        for table in section.tables:
            lines += [table.markdown(), ""]
    return "\n".join(lines)


def page(title: str, intro: str, sections: list[Section]) -> str:
    # The intro's markdown links, [text](href), become links; everything else is escaped first.
    linked = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', html.escape(intro))
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{linked}</p>", verdict_table(sections).html(), "<ol>"]
    body += [f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections)] + ["</ol>"]
    for i, section in enumerate(sections):
        body += [f'<h2 id="s{i}">{html.escape(section.title)}</h2>',
                 f"<p><em>Claim:</em> {html.escape(section.claim)}</p>"]
        body += [f'<p class="verdict {v.status.replace(" ", "-")}"><strong>{html.escape(v.status)}</strong> — '
                 f"{html.escape(v.subject)}: {html.escape(v.sentence)}</p>" for v in section.verdicts]
        if section.text:
            body.append(f"<p>{html.escape(section.text)}</p>")
        body += [f'<figure><img src="{html.escape(path)}" alt="{html.escape(caption)}">'
                 f"<figcaption>{html.escape(caption)}</figcaption></figure>" for path, caption in section.figures]
        body += [table.html() for table in section.tables]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
