"""MkDocs hook: the Sphinx roles of the docstrings (``:class:`~x.Y```) as links of the API reference.

The docstrings are numpydoc and refer to each other with Sphinx roles; the
API reference shows them as ``:class:`` followed by the target in code.
This hook turns each into the target's name, linked to its entry when the
target is documented: a dotted target is looked up as it is (through
mkdocs-autorefs, on any page), a bare name is looked up from the object whose
docstring holds it, then from its parents. ``~`` shows the last part only,
as in Sphinx. A target that is documented nowhere stays plain code: the
roles are optional links, never a broken reference.
"""

from __future__ import annotations

import bisect
import html
import re
from typing import Any

ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|const):<code>(?P<target>[^<]*)</code>")
ANCHOR = re.compile(r'<h\d id="(?P<id>dockerparallel[\w.]*)"')


def on_page_content(content: str, page: Any, config: Any, files: Any) -> str:
    """Replace the roles of the page's HTML with (optional) cross-references."""
    if ":<code>" not in content:
        return content
    anchors = [(match.start(), match.group("id")) for match in ANCHOR.finditer(content)]
    positions = [position for position, _ in anchors]
    known = {anchor for _, anchor in anchors}

    def replace(match: re.Match[str]) -> str:
        raw = html.unescape(match.group("target")).strip()
        short = raw.startswith("~")
        target = raw.lstrip("~").rstrip("()")
        shown = html.escape(target.rpartition(".")[2] if short else target)
        if "." in target and target.startswith("dockerparallel"):
            return f'<autoref identifier="{html.escape(target)}" optional><code>{shown}</code></autoref>'
        index = bisect.bisect_right(positions, match.start()) - 1
        owner = anchors[index][1] if index >= 0 else ""
        while owner:
            candidate = f"{owner}.{target}"
            if candidate in known:
                return f'<a href="#{html.escape(candidate)}"><code>{shown}</code></a>'
            owner = owner.rpartition(".")[0]
        return f"<code>{shown}</code>"

    return ROLE.sub(replace, content)
