"""Haemodynamic response kernels sampled on an oversampled time grid.

The canonical responses are differences of two gamma densities. Kernels are sampled
the way nilearn 0.14 samples them, so that design matrices agree with nilearn to
rounding error:

* ``rint(time_length_s / dt)`` samples spread evenly over ``[0, time_length_s]``
  (``dt = tr_s / oversampling``), each evaluated ``dt`` seconds late (gamma ``loc = dt``);
* main kernels are scaled to unit sum;
* the time derivative is a backward finite difference over 0.1 s and the dispersion
  derivative a finite difference over 0.01 of the peak dispersion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import special

from bids_glm.design.hrf_spec import HRF_MODELS, HrfSpec

__all__ = ["HRF_MODELS", "glover_hrf", "hrf_kernels", "spm_hrf"]


TIME_DERIVATIVE_STEP_S = 0.1
DISPERSION_DERIVATIVE_STEP = 0.01
DEFAULT_KERNEL_LENGTH_S = 32.0


@dataclass(frozen=True)
class GammaDifferenceShape:
    """Parameters of ``gamma(peak) - ratio * gamma(undershoot)``.

    Each gamma density has shape ``delay / dispersion`` and scale ``dispersion``
    (so its mean is ``delay`` seconds).
    """

    peak_delay_s: float
    undershoot_delay_s: float
    peak_dispersion_s: float
    undershoot_dispersion_s: float
    undershoot_ratio: float


SPM_SHAPE = GammaDifferenceShape(6.0, 16.0, 1.0, 1.0, 0.167)
GLOVER_SHAPE = GammaDifferenceShape(6.0, 12.0, 0.9, 0.9, 0.48)

_SHAPES_BY_FAMILY = {"spm": SPM_SHAPE, "glover": GLOVER_SHAPE}


def gamma_difference(times_s: np.ndarray, shape: GammaDifferenceShape) -> np.ndarray:
    """Evaluate an unnormalised difference-of-gammas response.

    Parameters
    ----------
    times_s : numpy.ndarray
        Times after the stimulus, in seconds (the response is 0 for times <= 0).
    shape : GammaDifferenceShape
        Delays, dispersions and undershoot ratio.

    Returns
    -------
    numpy.ndarray
        ``gamma.pdf(t; a1/d1, scale=d1) - c * gamma.pdf(t; a2/d2, scale=d2)``.
    """
    times_s = np.asarray(times_s, dtype=float)
    peak = gamma_density(
        times_s, shape.peak_delay_s / shape.peak_dispersion_s, shape.peak_dispersion_s
    )
    undershoot = gamma_density(
        times_s,
        shape.undershoot_delay_s / shape.undershoot_dispersion_s,
        shape.undershoot_dispersion_s,
    )
    return peak - shape.undershoot_ratio * undershoot


def gamma_density(times_s: np.ndarray, shape_k: float, scale_s: float) -> np.ndarray:
    """Gamma probability density with shape ``k`` and scale ``theta``; 0 for ``t <= 0``.

    ``t**(k-1) exp(-t/theta) / (Gamma(k) theta**k)``, evaluated in log space (scipy.special
    only, so importing the HRF code does not pull in scipy.stats).
    """
    x = np.asarray(times_s, dtype=float) / scale_s
    positive = x > 0
    safe = np.where(positive, x, 1.0)
    log_density = special.xlogy(shape_k - 1.0, safe) - safe - special.gammaln(shape_k)
    return np.where(positive, np.exp(log_density) / scale_s, 0.0)


def kernel_sample_times(tr_s: float, oversampling: int, time_length_s: float) -> np.ndarray:
    """Return the sample times of a kernel: ``rint(T / dt)`` points evenly over ``[0, T]``.

    Parameters
    ----------
    tr_s : float
        Repetition time in seconds.
    oversampling : int
        Number of kernel samples per repetition time (``dt = tr_s / oversampling``).
    time_length_s : float
        Kernel duration ``T`` in seconds.

    Returns
    -------
    numpy.ndarray
        Sample times in seconds.
    """
    _check_sampling(tr_s, oversampling)
    if not time_length_s > 0:
        raise ValueError(f"time_length_s must be > 0 seconds, got {time_length_s!r}")
    dt_s = tr_s / oversampling
    n_samples = int(np.rint(float(time_length_s) / dt_s))
    return np.linspace(0.0, time_length_s, n_samples)


def sampled_hrf(
    shape: GammaDifferenceShape,
    tr_s: float,
    oversampling: int = 50,
    time_length_s: float = DEFAULT_KERNEL_LENGTH_S,
    onset_s: float = 0.0,
) -> np.ndarray:
    """Sample a difference-of-gammas response as a unit-sum kernel.

    Parameters
    ----------
    shape : GammaDifferenceShape
        Response parameters.
    tr_s : float
        Repetition time in seconds.
    oversampling : int, default=50
        Kernel samples per repetition time.
    time_length_s : float, default=32.0
        Kernel duration in seconds.
    onset_s : float, default=0.0
        Delay of the response onset in seconds.

    Returns
    -------
    numpy.ndarray
        Kernel values (sum 1), sampled ``dt = tr_s / oversampling`` seconds late.
    """
    times_s = (
        kernel_sample_times(tr_s, oversampling, time_length_s) - onset_s - tr_s / oversampling
    )
    kernel = gamma_difference(times_s, shape)
    return kernel / kernel.sum()


def spm_hrf(
    tr_s: float,
    oversampling: int = 50,
    time_length_s: float = DEFAULT_KERNEL_LENGTH_S,
    onset_s: float = 0.0,
) -> np.ndarray:
    """Return SPM's canonical HRF as a unit-sum kernel (peak 6 s, undershoot 16 s, c=0.167).

    Parameters
    ----------
    tr_s : float
        Repetition time in seconds.
    oversampling : int, default=50
        Kernel samples per repetition time.
    time_length_s : float, default=32.0
        Kernel duration in seconds.
    onset_s : float, default=0.0
        Delay of the response onset in seconds.

    Returns
    -------
    numpy.ndarray
        Kernel sampled at ``dt = tr_s / oversampling``.
    """
    return sampled_hrf(SPM_SHAPE, tr_s, oversampling, time_length_s, onset_s)


def glover_hrf(
    tr_s: float,
    oversampling: int = 50,
    time_length_s: float = DEFAULT_KERNEL_LENGTH_S,
    onset_s: float = 0.0,
) -> np.ndarray:
    """Return Glover's HRF as a unit-sum kernel (peak 6 s, undershoot 12 s, d=0.9, c=0.48).

    Parameters
    ----------
    tr_s : float
        Repetition time in seconds.
    oversampling : int, default=50
        Kernel samples per repetition time.
    time_length_s : float, default=32.0
        Kernel duration in seconds.
    onset_s : float, default=0.0
        Delay of the response onset in seconds.

    Returns
    -------
    numpy.ndarray
        Kernel sampled at ``dt = tr_s / oversampling``.
    """
    return sampled_hrf(GLOVER_SHAPE, tr_s, oversampling, time_length_s, onset_s)


def time_derivative_kernel(
    shape: GammaDifferenceShape,
    tr_s: float,
    oversampling: int = 50,
    time_length_s: float = DEFAULT_KERNEL_LENGTH_S,
    onset_s: float = 0.0,
) -> np.ndarray:
    """Return ``(h(t) - h(t - 0.1 s)) / 0.1 s`` for a unit-sum kernel ``h``.

    Parameters
    ----------
    shape : GammaDifferenceShape
        Response parameters.
    tr_s, oversampling, time_length_s, onset_s
        As for :func:`sampled_hrf`.

    Returns
    -------
    numpy.ndarray
        Finite-difference time derivative, same length as the kernel.
    """
    step = TIME_DERIVATIVE_STEP_S
    now = sampled_hrf(shape, tr_s, oversampling, time_length_s, onset_s)
    later = sampled_hrf(shape, tr_s, oversampling, time_length_s, onset_s + step)
    return (now - later) / step


def dispersion_derivative_kernel(
    shape: GammaDifferenceShape,
    tr_s: float,
    oversampling: int = 50,
    time_length_s: float = DEFAULT_KERNEL_LENGTH_S,
    onset_s: float = 0.0,
) -> np.ndarray:
    """Return the finite difference of the kernel over 0.01 of the peak dispersion.

    As in nilearn 0.14, the undershoot keeps a dispersion of 1 s here, also for
    Glover's response (whose main kernel uses 0.9 s).

    Parameters
    ----------
    shape : GammaDifferenceShape
        Response parameters.
    tr_s, oversampling, time_length_s, onset_s
        As for :func:`sampled_hrf`.

    Returns
    -------
    numpy.ndarray
        ``(h(d) - h(d + 0.01)) / 0.01``, same length as the kernel.
    """
    step = DISPERSION_DERIVATIVE_STEP
    base = replace(shape, undershoot_dispersion_s=1.0)
    wider = replace(base, peak_dispersion_s=base.peak_dispersion_s + step)
    now = sampled_hrf(base, tr_s, oversampling, time_length_s, onset_s)
    wide = sampled_hrf(wider, tr_s, oversampling, time_length_s, onset_s)
    return (now - wide) / step


def checked_fir_delays(fir_delays: Sequence[int] | None) -> list[int]:
    """Validate FIR delays (in scans): distinct integers >= 0; ``None`` means ``[0]``.

    Parameters
    ----------
    fir_delays : sequence of int or None
        Delays in scans.

    Returns
    -------
    list of int
        The delays, in the order given.
    """
    if fir_delays is None:
        return [0]
    values = np.asarray(list(fir_delays), dtype=float).ravel()
    if values.size == 0:
        raise ValueError("fir_delays must hold at least one delay (in scans), got none")
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)) or values.min() < 0:
        raise ValueError(f"fir_delays must be integers >= 0 (scans), got {list(fir_delays)}")
    delays = [int(v) for v in values]
    if len(set(delays)) != len(delays):
        raise ValueError(f"fir_delays must be distinct, got {delays}")
    return delays


def basis_suffixes(hrf_model: HrfSpec, fir_delays: Sequence[int] | None = None) -> list[str]:
    """Return the column-name suffixes of one condition's basis functions.

    Parameters
    ----------
    hrf_model : HrfSpec
        The HRF model.
    fir_delays : sequence of int or None
        Delays in scans, used by ``"fir"`` only.

    Returns
    -------
    list of str
        ``[""]``, ``["", "_derivative"]``, ``["", "_derivative", "_dispersion"]``
        or ``["_delay_0", ...]``.
    """
    if hrf_model.base == "fir":
        return [f"_delay_{d}" for d in checked_fir_delays(fir_delays)]
    suffixes = [""]
    suffixes += ["_derivative"] * hrf_model.time_derivative
    suffixes += ["_dispersion"] * hrf_model.dispersion_derivative
    return suffixes


def hrf_kernels(
    hrf_model: HrfSpec,
    tr_s: float,
    oversampling: int = 50,
    *,
    fir_delays: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """Return the convolution kernels of an HRF model, sampled at ``dt = tr_s / oversampling``.

    Parameters
    ----------
    hrf_model : HrfSpec
        The HRF model.
    tr_s : float
        Repetition time in seconds.
    oversampling : int, default=50
        Kernel samples per repetition time.
    fir_delays : sequence of int or None
        Delays in scans for ``"fir"`` (default ``[0]``); ignored otherwise.

    Returns
    -------
    list of numpy.ndarray
        Unit-sum main kernel followed by the time (and dispersion) derivative kernels;
        for ``"fir"`` one unit-sum box of one TR per delay, starting ``delay`` TRs late;
        for ``"none"`` a unit impulse.
    """
    _check_sampling(tr_s, oversampling)
    oversampling = int(oversampling)
    if hrf_model.base == "none":
        impulse = np.zeros(oversampling)
        impulse[0] = 1.0
        return [impulse]
    if hrf_model.base == "fir":
        return [
            np.concatenate(
                [np.zeros(delay * oversampling), np.full(oversampling, 1.0 / oversampling)]
            )
            for delay in checked_fir_delays(fir_delays)
        ]
    shape = _SHAPES_BY_FAMILY[hrf_model.base]
    makers = [sampled_hrf]
    makers += [time_derivative_kernel] * hrf_model.time_derivative
    makers += [dispersion_derivative_kernel] * hrf_model.dispersion_derivative
    return [make(shape, tr_s, oversampling) for make in makers]


def _check_sampling(tr_s: float, oversampling: int) -> None:
    if not (np.isfinite(tr_s) and tr_s > 0):
        raise ValueError(f"tr_s must be a finite number of seconds > 0, got {tr_s!r}")
    if int(oversampling) != oversampling or oversampling < 1:
        raise ValueError(f"oversampling must be an integer >= 1, got {oversampling!r}")
