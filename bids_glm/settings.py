"""The one frozen description of what a bids-glm invocation should do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bids_glm.design.hrf_spec import GLOVER, HrfSpec
from bids_glm.image.mask_rule import INTERSECTION, MaskRule

if TYPE_CHECKING:  # the CLI imports settings before numpy is loaded
    from bids_glm.design.contrast_options import ContrastSpec, FContrastSpec
    from bids_glm.inputs.confound_strategy import ConfoundStrategy
    from bids_glm.inputs.event_spec import EventSpec
    from bids_glm.inputs.smdl.model import Node, StatsModel

DEFAULT_FMRIPREP_SPACE = "MNI152NLin2009cAsym"


@dataclass(frozen=True)
class ModelSettings:
    """First-level model choices, shared by every run.

    Attributes
    ----------
    hrf_model : HrfSpec
        HRF basis (see ``bids_glm.design.hrf_spec``).
    drift_model : str
        ``"cosine"``, ``"polynomial"`` or ``"none"``.
    high_pass_hz : float
        Cut-off of the cosine drift basis.
    drift_order : int
        Order of the polynomial drift basis.
    fir_delays_scans : tuple of int
        Delays of the FIR basis, in scans.
    noise_model : str
        ``"ols"`` or ``"ar1"``.
    signal_scaling : str
        ``"percent"`` (per-voxel percent signal change) or ``"none"``.
    smoothing_fwhm_mm : float
        FWHM of the isotropic Gaussian smoothing applied before the fit; 0 smooths nothing.
    slice_time_ref : float or None
        Fraction of the TR at which the model is sampled; None reads the
        derivative sidecar's ``StartTime`` (0 when absent).
    confounds : ConfoundStrategy or None
        Confound presets, columns and censoring rules; None adds no confounds.
    events : EventSpec or None
        Which events columns hold conditions, amplitudes and parametric modulators;
        None uses ``trial_type`` and ``modulation``.
    dummy_scans : int
        Leading volumes dropped from data and model (onsets shifted).
    contrasts : tuple of ContrastSpec
        User t contrasts, computed in addition to one t contrast per condition.
    f_contrasts : tuple of FContrastSpec
        User F contrasts (several rows).
    fixed_effects : str
        ``"precision"`` (inverse-variance weighted) or ``"unweighted"``.
    run_node : Node or None
        The Run node of a ``--model`` BIDS Stats Model: it then decides each run's
        regressors (X, transformations, HRF) and contrasts.
    design_dir : Path or None
        ``--design-dir``: a folder of user design matrices, one per run, used as given
        (no HRF, drift, confounds or constant added; no per-condition contrasts).
    """

    hrf_model: HrfSpec = GLOVER
    drift_model: str = "cosine"
    high_pass_hz: float = 0.01
    drift_order: int = 1
    fir_delays_scans: tuple[int, ...] = (0,)
    noise_model: str = "ar1"
    signal_scaling: str = "percent"
    smoothing_fwhm_mm: float = 0.0
    slice_time_ref: float | None = None
    confounds: ConfoundStrategy | None = None
    events: EventSpec | None = None
    dummy_scans: int = 0
    contrasts: tuple[ContrastSpec, ...] = ()
    f_contrasts: tuple[FContrastSpec, ...] = ()
    fixed_effects: str = "precision"
    run_node: Node | None = None
    design_dir: Path | None = None


@dataclass(frozen=True)
class Spm12Settings:
    """``--preset spm12``: SPM12's own first-level model (one multi-session GLM).

    Attributes
    ----------
    fmri_t, fmri_t0 : int
        Microtime bins per scan and the bin each scan is sampled at (``--microtime``).
    high_pass_cutoff_s : float
        DCT high-pass cut-off period in seconds (``1 / --high-pass``; SPM: 128).
    serial_correlations : bool
        SPM's ``AR(1)`` (ReML on pooled voxels); False is ``cvi none`` (``--noise-model ols``).
    time_derivative, dispersion_derivative : bool
        SPM's informed basis set (``--hrf-model "spm + derivative [+ dispersion]"``).
    """

    fmri_t: int = 16
    fmri_t0: int = 8
    high_pass_cutoff_s: float = 128.0
    serial_correlations: bool = True
    time_derivative: bool = False
    dispersion_derivative: bool = False


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline needs, validated by ``cli/validate.py``.

    Attributes
    ----------
    bids_dir, output_dir : Path
        Absolute paths of the input dataset and the derivatives folder to write.
    analysis_level : str
        ``"participant"`` or ``"group"``.
    participant_labels : tuple of str
        Labels without the ``sub-`` prefix; empty means every participant.
    tasks, sessions : tuple of str
        Restrict to these tasks / sessions; empty means all.
    space : str or None
        Output space of the preprocessed BOLD to use (the label only: ``--space
        MNI152NLin2009cAsym:res-2`` gives ``MNI152NLin2009cAsym`` here).
    resolution, density : str or None
        The ``res`` / ``den`` label of the preprocessed BOLD asked for with ``--space
        SPACE:res-<label>`` / ``:den-<label>`` (``native``: the series without a ``res``
        entity); None lets discovery choose (see ``inputs/variants.py``).
    desc : str
        The ``desc`` label of the preprocessed BOLD (``--desc``; fMRIPrep's ``preproc``).
    derivatives : tuple of Path
        Folders holding fMRIPrep-like derivatives.
    bids_filter_file : Path or None
        ``--bids-filter-file`` (fMRIPrep's format), for messages.
    bids_filters : mapping of str to object
        Its ``"bold"`` entity filters (see ``inputs/filters.py``); empty when none.
    work_dir : Path
        Scratch folder (temporary files, caches; pybids' index is kept in memory).
    model : ModelSettings
        The first-level model.
    stats_model : StatsModel or None
        The ``--model`` file, validated (its Dataset nodes drive the group level).
    n_cpus : int
        Cores the analysis may use.
    skip_bids_validator : bool
        Skip the input dataset check.
    mask : Path or None
        A user mask replacing the derivatives' brain masks.
    mask_combine : MaskRule
        How the runs' brain masks are combined: intersection, union or ``fraction:F``.
    model_maps : bool
        Also write per-run r-squared, residual standard deviation and AR(1) maps.
    single_trial : str or None
        ``"lsa"`` or ``"lss"``: also write per-run beta series (one estimate per trial);
        None (default) writes none.
    single_trial_conditions : tuple of str
        Conditions whose trials get estimates; empty means every condition of the run.
    single_trial_maps : tuple of str
        Series written beside each beta series: ``("t",)`` or none.
    dry_run : bool
        Build and write the designs, print the plan, fit nothing.
    overwrite : bool
        Redo participants whose outputs are complete with the same settings.
    command_line : str
        The command as typed, for the methods text.
    height_control, alpha, cluster_extent
        Thresholding of the fixed-effects z maps for the cluster tables (nilearn's defaults:
        fpr, 0.001, 0 voxels) and the reports.
    write_reports : bool
        Render the HTML reports (``--no-reports`` turns them off).
    write_pdf : bool
        Write a PDF copy of each HTML report (``--no-pdf`` turns it off).
    reports_only : bool
        Re-render the reports from written outputs; fit nothing.
    report_run_maps : bool
        Show run-level maps in the participant reports too.
    participant_outputs : Path or None
        Group level: where the participants' outputs are (default: OUTPUT_DIR).
    group_covariates : tuple of str
        Group level: participants.tsv columns added to the group design.
    verbosity : int
        -1 quiet, 0 normal, 1 verbose (tracebacks), 2 debug.
    spm12 : Spm12Settings or None
        ``--preset spm12``: fit SPM12's multi-session model instead of runs + fixed effects.
    surface_mesh_dir : Path or None
        ``--surface-mesh-dir``: a folder of mid-thickness meshes for surface data.
    templateflow_home : Path or None
        The TemplateFlow cache searched for template meshes (``$TEMPLATEFLOW_HOME``, else
        ``~/.cache/templateflow``); read only, nothing is downloaded.
    """

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    work_dir: Path
    participant_labels: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    sessions: tuple[str, ...] = ()
    space: str | None = None
    resolution: str | None = None
    density: str | None = None
    desc: str = "preproc"
    derivatives: tuple[Path, ...] = ()
    bids_filter_file: Path | None = None
    bids_filters: Mapping[str, object] = field(default_factory=dict)
    model: ModelSettings = field(default_factory=ModelSettings)
    stats_model: StatsModel | None = None
    n_cpus: int = 1
    skip_bids_validator: bool = False
    mask: Path | None = None
    mask_combine: MaskRule = INTERSECTION
    model_maps: bool = False
    single_trial: str | None = None
    single_trial_conditions: tuple[str, ...] = ()
    single_trial_maps: tuple[str, ...] = ()
    dry_run: bool = False
    overwrite: bool = False
    command_line: str = ""
    height_control: str = "fpr"
    alpha: float = 0.001
    cluster_extent: int = 0
    write_reports: bool = True
    write_pdf: bool = True
    reports_only: bool = False
    report_run_maps: bool = False
    participant_outputs: Path | None = None
    group_covariates: tuple[str, ...] = ()
    verbosity: int = 0
    spm12: Spm12Settings | None = None
    surface_mesh_dir: Path | None = None
    templateflow_home: Path | None = None
