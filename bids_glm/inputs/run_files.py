"""One run's inputs: its BOLD series, mask, events, confounds and repetition time."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bids_glm.errors import InputError
from bids_glm.image.cifti_header import is_cifti_series
from bids_glm.image.mask import load_image
from bids_glm.image.smooth import voxel_sizes_mm
from bids_glm.inputs.cifti_runs import cifti_run_facts
from bids_glm.inputs.entities import applicable_files, applies_to, raw_entities, split_name
from bids_glm.inputs.repetition_time import header_tr_s, resolve_tr_s
from bids_glm.inputs.run_input import RunInput
from bids_glm.inputs.sidecars import read_json_object
from bids_glm.inputs.surface_runs import surface_run_facts

LOGGER = logging.getLogger("bids_glm")
MASK_IGNORED = frozenset({"desc"})
CONFOUNDS_IGNORED = frozenset({"desc", "space", "res", "den"})


@dataclass(frozen=True)
class CandidateFiles:
    """The files runs' inputs are chosen from, found once for every run.

    Attributes
    ----------
    masks, confounds : list of str
        fMRIPrep brain masks and confounds tables.
    events, raw_sidecars : list of Path
        The raw dataset's events tables and BOLD sidecars.
    bold_sidecars : list of Path
        The derivatives' BOLD sidecars.
    derivative_roots : list of Path
        The derivatives datasets.
    json_documents : dict of Path to dict
        Every readable JSON file's object (`bids_glm.inputs.sidecars.read_json_files`).
    """

    masks: list[str]
    confounds: list[str]
    events: list[Path]
    raw_sidecars: list[Path]
    bold_sidecars: list[Path]
    derivative_roots: list[Path]
    json_documents: dict[Path, dict]

    def derivative_metadata(self, bold: Path) -> dict:
        """The metadata of a derivative BOLD file: its dataset's sidecars that apply to the
        file's own entities (a surface's ``hemi`` too), as pybids' ``get_metadata`` merges
        them."""
        root = next((r for r in self.derivative_roots if r in bold.parents), bold.parent)
        entities = split_name(bold)[0]
        return self.metadata(applicable_files(self.bold_sidecars, entities, root, bold.parent))

    def metadata(self, paths: Sequence[Path]) -> dict:
        """The JSON objects of ``paths`` merged in order (later keys win)."""
        merged: dict = {}
        for path in paths:
            document = self.json_documents.get(path)
            if document is None:  # not seen before indexing (written since): read it now
                document, problem = read_json_object(path)
                if document is None:
                    raise InputError(f"{path}: {problem}")
            merged.update(document)
        return merged


def matching_derivative(
    candidates: Sequence[str], entities: Mapping[str, str], ignore: frozenset[str]
) -> Path | None:
    """The candidate whose entities, apart from ``ignore``, are exactly the run's."""
    wanted = {k: v for k, v in entities.items() if k not in ignore}
    for candidate in sorted(candidates):
        found = {k: v for k, v in split_name(candidate)[0].items() if k not in ignore}
        if found.keys() == wanted.keys() and applies_to(found, wanted):
            return Path(candidate)
    return None


def build_run_input(
    bold: Path,
    bids_dir: Path,
    files: CandidateFiles,
    events_needed: bool = True,
    surface_pair: tuple[Path, ...] = (),
) -> RunInput:
    """One run's inputs: a 4-D NIfTI or CIFTI ``bold``, or a surface ``surface_pair`` (L, R).

    Its metadata (RepetitionTime, StartTime) merges the sidecars that apply to it by the
    inheritance principle, in the derivatives then in the raw dataset.
    """
    grayordinates = None  # CIFTI: the header, parsed once here
    voxel_size_mm = None  # NIfTI only
    if surface_pair:
        entities, n_volumes, header_step_s = surface_run_facts(surface_pair)
        header_name = "GIfTI TimeStep"  # FreeSurfer writes milliseconds: converted
    elif is_cifti_series(bold):
        entities, grayordinates = cifti_run_facts(bold)
        n_volumes, header_step_s = grayordinates.n_volumes, grayordinates.time_step_s
        header_name = "CIFTI SeriesAxis step"
    else:
        entities, _, _ = split_name(bold)
        image = load_image(bold)
        if len(image.shape) != 4:
            raise InputError(f"{bold}: expected a 4-D BOLD series, found shape {image.shape}")
        n_volumes, header_step_s = int(image.shape[3]), header_tr_s(image)
        voxel_size_mm = tuple(float(size) for size in voxel_sizes_mm(image.affine))
        header_name = "NIfTI header"
    raw = raw_entities(entities)
    run_dir = bids_dir / f"sub-{raw['sub']}"
    if "ses" in raw:
        run_dir = run_dir / f"ses-{raw['ses']}"
    run_dir = run_dir / "func"
    events_files = applicable_files(files.events, raw, bids_dir, run_dir)
    if not events_files and events_needed:
        LOGGER.warning("%s: no events.tsv applies to this run", bold.name)
    derivative_meta = files.derivative_metadata(bold)
    raw_meta = files.metadata(applicable_files(files.raw_sidecars, raw, bids_dir, run_dir))
    tr_s = resolve_tr_s(bold, derivative_meta, raw_meta, header_step_s, header_name)
    start_time = derivative_meta.get("StartTime")
    return RunInput(
        entities=entities,
        bold_path=bold,
        # surfaces and grayordinates have no brain mask: constant ones are left out later
        mask_path=(
            None
            if surface_pair or is_cifti_series(bold)
            else matching_derivative(files.masks, entities, MASK_IGNORED)
        ),
        events_path=events_files[-1] if events_files else None,
        confounds_path=matching_derivative(files.confounds, entities, CONFOUNDS_IGNORED),
        tr_s=tr_s,
        start_time_s=None if start_time is None else float(start_time),
        n_volumes=n_volumes,
        surface_paths=tuple(surface_pair),
        grayordinates=grayordinates,
        voxel_size_mm=voxel_size_mm,
    )
