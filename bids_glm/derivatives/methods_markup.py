"""How the methods text is marked up in each format: escaping, code, paragraphs, citations.

`FORMATS` holds one `Format` per output (Markdown, HTML, LaTeX); `Citations` collects the
references a render cites; the small text helpers are the templates' filters and globals.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

from bids_glm.derivatives.bibliography import Reference

_TEX_WORDS = ("backslash", "asciitilde", "asciicircum", "less", "greater", "bar", "asciigrave")
_TEX_SPECIALS = {c: "\\" + c for c in "&%$#_{}"} | {
    c: rf"\text{word}{{}}" for c, word in zip("\\~^<>|`", _TEX_WORDS, strict=True)
}
_TEX_SPECIAL = re.compile("|".join(re.escape(c) for c in _TEX_SPECIALS))
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|&#])")


def latex_escape(value: object) -> Markup:
    """Text made safe for LaTeX body text (specials such as ``_ & % #`` become commands)."""
    if isinstance(value, Markup):
        return value
    return Markup(_TEX_SPECIAL.sub(lambda m: _TEX_SPECIALS[m.group(0)], str(value)))


def markdown_escape(value: object) -> Markup:
    """Text made literal in Markdown (inline punctuation backslash-escaped)."""
    if isinstance(value, Markup):
        return value
    return Markup(_MD_SPECIAL.sub(r"\\\1", str(value)))


def _markdown_code(value: object) -> Markup:
    text = str(value)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Markup(f"{fence}{pad}{text}{pad}{fence}")


@dataclass(frozen=True)
class Format:
    """How one output format escapes text and marks code, paragraphs, citations and links."""

    escape: Callable[[object], Markup]
    code: Callable[[object], Markup]
    paragraph: Callable[[str], Markup]
    cite: Callable[[Sequence[Reference]], Markup]
    link: Callable[[str], Markup]

    def and_join(self, items: Iterable[object]) -> Markup:
        """``a``, ``a and b``, ``a, b and c``; items that are not markup are escaped."""
        parts = [self.escape(item) for item in items]
        head = Markup(", ").join(parts[:-1])
        return Markup(" and ").join([head, parts[-1]] if len(parts) > 1 else parts)

    def phrase(self, *parts: object) -> Markup:
        """Text and markup joined, the text escaped (templates use it instead of ``~``)."""
        return Markup("").join(self.escape(part) for part in parts)


def _squash(text: object) -> str:
    return " ".join(str(text).split())


FORMATS = {
    "md": Format(
        escape=markdown_escape,
        code=_markdown_code,
        paragraph=lambda text: Markup(_squash(text)),
        cite=lambda refs: (
            Markup("(%s)") % Markup("; ").join(markdown_escape(r.short) for r in refs)
        ),
        link=lambda url: Markup("<%s>") % Markup(url),
    ),
    "html": Format(
        escape=escape,
        code=lambda value: Markup("<code>%s</code>") % str(value),
        paragraph=lambda text: Markup("<p>%s</p>") % Markup(_squash(text)),
        cite=lambda refs: (
            Markup("(%s)")
            % Markup("; ").join(
                Markup('<a href="#ref-%s">%s</a>') % (r.key, r.short) for r in refs
            )
        ),
        link=lambda url: Markup('<a href="%s">%s</a>') % (url, url),
    ),
    "tex": Format(
        escape=latex_escape,
        code=lambda value: Markup(r"\texttt{%s}") % latex_escape(value),
        paragraph=lambda text: Markup(_squash(text)),
        cite=lambda refs: Markup(r"\citep{" + ",".join(r.key for r in refs) + "}"),
        link=lambda url: Markup(r"\url{%s}") % latex_escape(url),
    ),
}


@dataclass
class Citations:
    """The references a render cites, in order of first citation (`cite` is the templates'
    ``cite(key, ...)``)."""

    library: Mapping[str, Reference]
    style: Format
    cited: list[Reference] = field(default_factory=list)

    def cite(self, *keys: str) -> Markup:
        unknown = [key for key in keys if key not in self.library]
        if not keys or unknown:
            raise ValueError(f"cite: expected keys of references.bib; received {keys}")
        refs = [self.library[key] for key in keys]
        self.cited += [ref for ref in refs if ref not in self.cited]
        return self.style.cite(refs)


def number_text(value: float) -> str:
    """A number as the text writes it (``2``, ``2.5``, ``0.01``)."""
    return f"{value:g}"


def voxel_size_text(sizes_mm: Sequence[float]) -> str:
    """``2 mm isotropic`` or ``2 x 2 x 2.5 mm``."""
    if len(set(sizes_mm)) == 1:
        return f"{number_text(sizes_mm[0])} mm isotropic"
    return " x ".join(number_text(size) for size in sizes_mm) + " mm"


def count_text(n: int, singular: str, plural: str | None = None) -> str:
    """``1 run``, ``2 runs`` (``plural`` where adding an s is wrong)."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"
