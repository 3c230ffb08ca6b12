"""``--preset spm12`` and ``--microtime``: the SPM12 model options, typed once.

The preset sets SPM12's defaults (canonical HRF, 128 s DCT high-pass, AR(1) by ReML,
``fmri_t`` 16 and ``fmri_t0`` 8); the model flags given on top keep SPM's meaning:
``--noise-model ols`` is ``cvi none``, ``--high-pass HZ`` the DCT cut-off (``1 / HZ`` s),
``--hrf-model "spm + derivative [+ dispersion]"`` the informed basis set. A flag counts when
it is typed, even at bids-glm's default value (``--high-pass 0.01`` is a 100 s cut-off); a
flag left out leaves SPM's default. ``--drift-model cosine`` and ``--signal-scaling global``
are what SPM does; their other values have no SPM12 counterpart and are refused.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from bids_glm.design.hrf_spec import HrfSpec, parse_hrf_model
from bids_glm.errors import InputError
from bids_glm.settings import ModelSettings, Spm12Settings

SPM_HIGH_PASS_CUTOFF_S = 128.0

# options whose meaning has no SPM12 counterpart in this mode: (dest, flag, "unset" test)
_UNSUPPORTED = (
    ("model", "--model", lambda v: v is None),
    ("design_dir", "--design-dir", lambda v: v is None),
    ("parametric_modulators", "--parametric-modulators", lambda v: not v),
    ("single_trial", "--single-trial", lambda v: v is None),
)


def _microtime(text: str | None) -> tuple[int, int]:
    """``"16,8"`` -> (16, 8), checked: ``fmri_t >= 1`` and ``1 <= fmri_t0 <= fmri_t``."""
    if text is None:
        return 16, 8
    parts = text.split(",")
    try:
        fmri_t, fmri_t0 = (int(p) for p in parts) if len(parts) == 2 else (0, 0)
    except ValueError:
        fmri_t, fmri_t0 = 0, 0
    if fmri_t < 1 or not 1 <= fmri_t0 <= fmri_t:
        raise InputError(
            f"--microtime {text}: expected two integers T,T0 with T >= 1 and 1 <= T0 <= T "
            "(SPM's fmri_t and fmri_t0, e.g. 16,8)"
        )
    return fmri_t, fmri_t0


def _check_spm_values(args: argparse.Namespace, typed: frozenset[str]) -> None:
    """Typed ``--drift-model`` and ``--signal-scaling`` must name what SPM12 does."""
    for dest, flag, spm_value, what in (
        ("drift_model", "--drift-model", "cosine", "SPM's DCT high-pass (set by --high-pass)"),
        ("signal_scaling", "--signal-scaling", "global", "session grand-mean scaling to 100"),
    ):
        if dest in typed and getattr(args, dest) != spm_value:
            raise InputError(
                f"{flag} {getattr(args, dest)}: --preset spm12 always uses {what}; "
                f"leave {flag} out or give {flag} {spm_value}"
            )


def _hrf(args: argparse.Namespace, typed: frozenset[str]) -> HrfSpec:
    """The SPM basis set: the canonical HRF unless ``--hrf-model`` names an SPM one."""
    if "hrf_model" not in typed:
        return HrfSpec("spm")
    spec = parse_hrf_model(args.hrf_model)
    if spec.base != "spm":
        raise InputError(
            f"--hrf-model {args.hrf_model}: --preset spm12 fits SPM's canonical basis set; "
            "expected 'spm', 'spm + derivative' or 'spm + derivative + dispersion'"
        )
    return spec


def spm12_settings(
    args: argparse.Namespace, model: ModelSettings, typed: frozenset[str] = frozenset()
) -> tuple[ModelSettings, Spm12Settings | None]:
    """Apply ``--preset spm12`` (and ``--microtime``) to the model options.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed arguments.
    model : ModelSettings
        The model options as the flags give them.
    typed : frozenset of str
        The model options typed on the command line (``dest`` names); the others take
        SPM's defaults.

    Returns
    -------
    tuple
        The model options (HRF and high-pass set to what SPM fits) and the SPM12 settings,
        or the model unchanged and None without the preset.

    Raises
    ------
    InputError
        ``--microtime`` without the preset, a malformed ``--microtime``, a non-SPM HRF, or an
        option the SPM12 mode does not support.
    """
    preset = getattr(args, "preset", None)
    if preset is None:
        if getattr(args, "microtime", None) is not None:
            raise InputError("--microtime: only used with --preset spm12")
        return model, None
    _check_spm_values(args, typed)
    for dest, flag, unset in _UNSUPPORTED:
        if not unset(getattr(args, dest, None)):
            raise InputError(
                f"{flag}: not supported with --preset spm12; leave it out, or drop --preset"
            )
    fmri_t, fmri_t0 = _microtime(getattr(args, "microtime", None))
    hrf = _hrf(args, typed)
    cutoff_s = 1.0 / args.high_pass if "high_pass" in typed else SPM_HIGH_PASS_CUTOFF_S
    spm12 = Spm12Settings(
        fmri_t=fmri_t,
        fmri_t0=fmri_t0,
        high_pass_cutoff_s=cutoff_s,
        serial_correlations=model.noise_model == "ar1",
        time_derivative=hrf.time_derivative,
        dispersion_derivative=hrf.dispersion_derivative,
    )
    model = replace(
        model,
        hrf_model=hrf,
        high_pass_hz=1.0 / cutoff_s,
        drift_model="cosine",
        signal_scaling="global",
    )
    return model, spm12
