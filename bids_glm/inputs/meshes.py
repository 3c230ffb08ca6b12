"""Where the cortical meshes of a surface analysis come from (never downloaded).

Smoothing along the cortex and drawing surface maps need each hemisphere's mid-thickness
mesh, with as many vertices as the data. They are looked for, in this order:

1. ``--surface-mesh-dir DIR``: TemplateFlow-style files
   (``tpl-fsaverage_hemi-L_den-10k_midthickness.surf.gii``, entities in any order) for
   template spaces, or fMRIPrep-style ``*_hemi-L_midthickness.surf.gii`` (with no ``sub``
   entity, or the participant's);
2. for ``fsnative``, the participant's fMRIPrep anatomical derivatives:
   ``sub-<s>/[ses-<x>/]anat/sub-<s>[_ses-<x>][_acq-..][_run-..]_hemi-L[_space-fsnative]
   _midthickness.surf.gii`` (fMRIPrep 20.2 keeps the T1w's ``acq``/``run``; 23 and later
   do not; neither has ``space``, so ``space-fsnative`` is only accepted);
3. for template spaces, the TemplateFlow cache (``$TEMPLATEFLOW_HOME``, else
   ``~/.cache/templateflow``): ``tpl-fsaverage/`` with ``den-10k`` (fsaverage5),
   ``den-41k`` (fsaverage6) or ``den-164k`` (fsaverage), and ``tpl-fsLR/`` with
   ``den-32k`` (the cortex of fsLR 91k grayordinates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bids_glm.errors import InputError
from bids_glm.image.mesh import MeshFiles, mesh_vertex_count
from bids_glm.image.surface import HEMISPHERES
from bids_glm.inputs.entities import split_name
from bids_glm.settings import Settings

MESH_SUFFIX = "midthickness"
MESH_EXTENSION = ".surf.gii"
# --space -> (TemplateFlow template, mesh density)
TEMPLATE_MESHES = {
    "fsaverage5": ("fsaverage", "10k"),
    "fsaverage6": ("fsaverage", "41k"),
    "fsaverage": ("fsaverage", "164k"),
    "fsLR": ("fsLR", "32k"),
}
NATIVE_SPACES = (None, "fsnative")  # fMRIPrep's subject meshes carry no space (or fsnative)


@dataclass(frozen=True)
class MeshQuery:
    """Whose meshes are wanted, and where they may be.

    Attributes
    ----------
    space : str
        ``fsaverage5``, ``fsaverage6``, ``fsaverage``, ``fsnative`` or ``fsLR``.
    subject : str
        Participant label (no ``sub-``).
    session : str or None
        Session label, when the data have one.
    mesh_dir : Path or None
        ``--surface-mesh-dir``.
    derivatives : tuple of Path
        The fMRIPrep derivatives folders.
    templateflow_home : Path or None
        The TemplateFlow cache.
    """

    space: str
    subject: str
    session: str | None
    mesh_dir: Path | None
    derivatives: tuple[Path, ...]
    templateflow_home: Path | None


@dataclass(frozen=True)
class MeshLookup:
    """The meshes found (None when none) and every place that was searched, in words."""

    files: MeshFiles | None
    searched: tuple[str, ...]


def mesh_query(settings: Settings, entities: dict[str, str]) -> MeshQuery:
    """The meshes a unit's data (``sub``, optional ``ses``, ``space`` entities) need."""
    return MeshQuery(
        space=entities["space"],
        subject=entities["sub"],
        session=entities.get("ses"),
        mesh_dir=settings.surface_mesh_dir,
        derivatives=settings.derivatives,
        templateflow_home=settings.templateflow_home,
    )


def find_meshes(query: MeshQuery) -> MeshLookup:
    """Both hemispheres' meshes for ``query``, from the first place that has both.

    Raises
    ------
    InputError
        A place holds several candidate meshes for one hemisphere (names them).
    """
    searched = []
    for folder, accept, pattern in _places(query):
        searched.append(f"{folder}/{pattern}")
        pair = _pair(folder, accept, query)
        if pair is not None:
            return MeshLookup(pair, tuple(searched))
    return MeshLookup(None, tuple(searched))


def _places(query: MeshQuery):
    """``(folder, accept(entities) -> bool, pattern in words)`` in the order searched."""
    template = TEMPLATE_MESHES.get(query.space)
    native = query.space == "fsnative"
    if query.mesh_dir is not None:
        if template is not None:
            tpl, den = template
            yield (
                query.mesh_dir,
                lambda e: _is_template(e, tpl, den) or _is_subject(e, query, native),
                f"tpl-{tpl}_hemi-<L|R>_den-{den}_{MESH_SUFFIX}{MESH_EXTENSION} or "
                f"*_hemi-<L|R>_{MESH_SUFFIX}{MESH_EXTENSION}",
            )
        else:
            yield (
                query.mesh_dir,
                lambda e: _is_subject(e, query, native),
                f"*_hemi-<L|R>_{MESH_SUFFIX}{MESH_EXTENSION}",
            )
    if native:
        subject_dir = f"sub-{query.subject}"
        folders = [Path(subject_dir) / "anat"]
        if query.session is not None:
            folders.insert(0, Path(subject_dir) / f"ses-{query.session}" / "anat")
        for root in query.derivatives:
            for folder in folders:
                yield (
                    root / folder,
                    lambda e: e.get("sub") == query.subject and _is_subject(e, query, True),
                    f"sub-{query.subject}*_hemi-<L|R>[_space-fsnative]_{MESH_SUFFIX}"
                    f"{MESH_EXTENSION}",
                )
    if template is not None and query.templateflow_home is not None:
        tpl, den = template
        yield (
            query.templateflow_home / f"tpl-{tpl}",
            lambda e: _is_template(e, tpl, den),
            f"tpl-{tpl}_hemi-<L|R>_den-{den}_{MESH_SUFFIX}{MESH_EXTENSION}",
        )


def _is_template(entities: dict[str, str], tpl: str, den: str) -> bool:
    return entities.get("tpl") == tpl and entities.get("den") == den and "desc" not in entities


def _is_subject(entities: dict[str, str], query: MeshQuery, native: bool) -> bool:
    """An fMRIPrep-style mesh: no template; the participant's (or no ``sub``), no density."""
    if "tpl" in entities or "den" in entities or "desc" in entities:
        return False
    if entities.get("sub", query.subject) != query.subject:
        return False
    if query.session is not None and entities.get("ses", query.session) != query.session:
        return False
    return entities.get("space") in (NATIVE_SPACES if native else (None,))


def _pair(folder: Path, accept, query: MeshQuery) -> MeshFiles | None:
    """The folder's one accepted mesh per hemisphere; None when a hemisphere has none."""
    if not folder.is_dir():
        return None
    found: dict[str, list[Path]] = {hemi: [] for hemi in HEMISPHERES}
    for path in sorted(folder.glob(f"*_{MESH_SUFFIX}{MESH_EXTENSION}")):
        entities, suffix, extension = split_name(path)
        hemi = entities.get("hemi")
        if suffix == MESH_SUFFIX and extension == MESH_EXTENSION and hemi in found:
            if accept(entities):
                found[hemi].append(path)
    if not all(found.values()):
        return None
    for hemi, paths in found.items():
        if len(paths) > 1:
            raise InputError(
                f"{folder}: {len(paths)} candidate hemi-{hemi} meshes for --space "
                f"{query.space} ({', '.join(p.name for p in paths)}); expected one: keep "
                "one in a folder given with --surface-mesh-dir"
            )
    return MeshFiles(found["L"][0], found["R"][0])


def require_meshes(query: MeshQuery, why: str) -> MeshFiles:
    """The meshes of :func:`find_meshes`, or an ``InputError`` listing every place searched."""
    lookup = find_meshes(query)
    if lookup.files is None:
        places = "; ".join(lookup.searched) or "nowhere (no --surface-mesh-dir)"
        raise InputError(
            f"{why}: no mid-thickness mesh pair found for --space {query.space} "
            f"(sub-{query.subject}); searched: {places}. Give a folder of meshes with "
            "--surface-mesh-dir, or set TEMPLATEFLOW_HOME to a TemplateFlow copy "
            "(nothing is downloaded)"
        )
    return lookup.files


def check_mesh_vertices(
    meshes: MeshFiles, n_vertices: Sequence[int], data_paths: Sequence[Path]
) -> None:
    """Each hemisphere's mesh must have as many vertices as its data (``n_vertices``).

    Raises
    ------
    InputError
        Names the mesh, the data file (``data_paths``, per hemisphere) and both counts.
    """
    for mesh_path, expected, data_path in zip(meshes.paths, n_vertices, data_paths, strict=True):
        n_mesh = mesh_vertex_count(mesh_path)
        if n_mesh != expected:
            raise InputError(
                f"{mesh_path}: {n_mesh} vertices, but the data {data_path} have {expected}; "
                "expected the mesh the data were sampled on"
            )
