"""The strict BibTeX of ``boilerplate/references.bib``: entries and their display forms."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_MAX_LISTED_AUTHORS = 6


@dataclass(frozen=True)
class Reference:
    """One ``references.bib`` entry: its key, type, fields and verbatim BibTeX text."""

    key: str
    entry_type: str
    fields: Mapping[str, str]
    bibtex: str

    def _authors(self) -> list[tuple[str, str]]:
        """(last name, initials) per author; ``("others", "")`` for BibTeX's ``and others``."""
        authors = []
        for name in self.fields["author"].split(" and "):
            last, _, first = (part.strip() for part in name.partition(","))
            initials = "".join(word[0] for word in re.split(r"[\s.\-]+", first) if word)
            authors.append((last, initials))
        return authors

    @property
    def short(self) -> str:
        """Author-year label: ``Glover 1999``, ``A and B 2001``, ``Friston et al. 1998``."""
        names = [last for last, _ in self._authors()]
        if len(names) == 1:
            lead = names[0]
        elif len(names) == 2 and names[1] != "others":
            lead = f"{names[0]} and {names[1]}"
        else:
            lead = f"{names[0]} et al."
        return f"{lead} {self.fields['year']}"

    @property
    def url(self) -> str:
        """The DOI as a URL."""
        return f"https://doi.org/{self.fields['doi']}"

    @property
    def full(self) -> str:
        """The whole reference as plain text, Vancouver-like, without the DOI."""
        authors = [f"{last} {initials}".strip() for last, initials in self._authors()]
        shown = [a for a in authors[:_MAX_LISTED_AUTHORS] if a != "others"]
        if len(shown) < len(authors):
            shown.append("et al.")
        f = {k: _plain(v) for k, v in self.fields.items()}
        venue = f.get("journal") or f.get("booktitle") or f.get("publisher", "")
        volume = f.get("volume", "")
        if "number" in f:
            volume += f"({f['number']})"
        where = ":".join(part for part in (volume, f.get("pages", "")) if part)
        tail = " ".join(part for part in (venue, where) if part)
        return f"{', '.join(shown)} ({f['year']}). {f['title']}. {tail}."


def _plain(bibtex_value: str) -> str:
    """Field text for display: protective braces dropped, ``--`` as an en dash."""
    return bibtex_value.replace("{", "").replace("}", "").replace("--", "\u2013")


_ENTRY = re.compile(r"^@(\w+)\{([^,\s]+),\n(.*?)\n\}$", re.MULTILINE | re.DOTALL)
_FIELD = re.compile(r"^\s+(\w+) = \{(.*)\},$")


def read_references(text: str) -> dict[str, Reference]:
    """Parse the strict BibTeX of ``boilerplate/references.bib``.

    Every entry is ``@type{key,`` then one ``name = {value},`` line per field, then ``}``.

    Raises
    ------
    ValueError
        A field line not of that form, a duplicate key, or an entry without author, title,
        year or doi.
    """
    references: dict[str, Reference] = {}
    for match in _ENTRY.finditer(text):
        entry_type, key, body = match.groups()
        fields = {}
        for line in body.splitlines():
            field_match = _FIELD.match(line)
            if field_match is None:
                raise ValueError(f"references.bib entry {key}: malformed field line {line!r}")
            fields[field_match.group(1)] = field_match.group(2)
        absent = [name for name in ("author", "title", "year", "doi") if name not in fields]
        if absent or key in references:
            raise ValueError(f"references.bib entry {key}: duplicate key or missing {absent}")
        references[key] = Reference(key, entry_type, fields, match.group(0))
    return references
