"""Isotropic Gaussian smoothing in millimetres, on the mask's bounding box, as banded products.

The kernel is scipy's sampled Gaussian (``gaussian_filter1d``: radius ``int(4 sigma + 0.5)``,
weights normalised to sum 1, ``reflect`` boundaries), which is also nilearn's. Smoothing one
axis of a box is a product with a banded ``(n, n)`` matrix; only the rows a later step needs
are formed (the mask's bounding box along that axis), and the band is cut into diagonal blocks
so each block is one small dense matrix product (BLAS, no Python loop over voxels). Sums are
formed in float64 and each pass is rounded to float32, as scipy does on the float32 volumes that
nilearn smooths: the smoothed data are bit-identical to nilearn's, which matters because the
AR(1) estimate, binned to 0.01, amplifies any rounding difference of the data.
Each pass reads its axis as the contiguous one and writes it as the slowest one, so the three
passes take the volume ``(z, y, x)`` -> ``(x', z, y)`` -> ``(y', x', z)`` -> ``(z', y', x')``
(C order) without any transposing copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FWHM_PER_SIGMA = float(np.sqrt(8.0 * np.log(2.0)))
TRUNCATE_SIGMAS = 4.0  # scipy's default support of the sampled kernel
MIN_BLOCK_ROWS = 16  # output rows per dense block: larger blocks waste work on zeros
# Lines smoothed together (bounds the float64 scratch per thread). 512 lines keep the scratch
# in L2 and smooth a volume ~20 % faster alone: the choice of a process that smooths on its own
# (`bids_glm.image.forked_reducers`). Threads that share the GIL with reading and summing
# threads do better with 2048: 4x fewer numpy calls, each a release and retake of that GIL
# (800-volume run: 0.3-0.7 s less in 5 of 5 interleaved pairs).
LINES_PER_GROUP = 2048
LINES_PER_GROUP_ALONE = 512


def voxel_sizes_mm(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths (mm) from the columns of an affine's 3x3 part."""
    return np.sqrt(np.sum(np.asarray(affine)[:3, :3] ** 2, axis=0))


def sigma_voxels(fwhm_mm: float, affine: np.ndarray) -> np.ndarray:
    """Per-axis Gaussian sigma in voxels for an isotropic FWHM in mm (anisotropic voxels)."""
    return fwhm_mm / (FWHM_PER_SIGMA * voxel_sizes_mm(affine))


def kernel_radius_voxels(sigma_vox: np.ndarray) -> np.ndarray:
    """Half-width of scipy's sampled Gaussian kernel per axis (``int(4 sigma + 0.5)``)."""
    return np.array([int(TRUNCATE_SIGMAS * s + 0.5) if s > 0 else 0 for s in sigma_vox])


def gaussian_weights(sigma_vox: float) -> np.ndarray:
    """scipy's sampled, unit-sum Gaussian kernel (float64, length ``2 radius + 1``)."""
    if sigma_vox <= 0:
        return np.ones(1)
    radius = int(TRUNCATE_SIGMAS * sigma_vox + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma_vox) ** 2)
    return weights / weights.sum()


def axis_operator(n_voxels: int, sigma_vox: float) -> np.ndarray:
    """Matrix ``K`` (n, n) with ``K @ line`` = ``gaussian_filter1d(line, sigma)`` (reflect).

    Parameters
    ----------
    n_voxels : int
        Length of the axis.
    sigma_vox : float
        Sigma in voxels; 0 gives the identity.

    Returns
    -------
    ndarray, shape (n_voxels, n_voxels), float64
    """
    weights = gaussian_weights(sigma_vox)
    radius = weights.size // 2
    rows = np.repeat(np.arange(n_voxels), weights.size)
    columns = (np.arange(n_voxels)[:, None] + np.arange(-radius, radius + 1)).ravel()
    period = 2 * n_voxels  # reflect: ... c b a | a b c ... z y x | x y z ...
    columns = np.mod(columns, period)
    columns = np.where(columns >= n_voxels, period - 1 - columns, columns)
    operator = np.zeros((n_voxels, n_voxels))
    np.add.at(operator, (rows, columns), np.tile(weights, n_voxels))
    return operator


@dataclass(frozen=True)
class AxisPass:
    """Smoothing of one axis restricted to the output rows ``keep``, as dense blocks.

    Attributes
    ----------
    blocks : tuple of (int, int, int, int, ndarray)
        ``(out_start, out_stop, in_start, in_stop, matrix)``: output rows (relative to
        ``keep.start``) computed from input columns, ``matrix`` float64.
    n_out : int
        Number of output rows (``keep`` length).
    """

    blocks: tuple[tuple[int, int, int, int, np.ndarray], ...]
    n_out: int

    def apply(
        self, lines: np.ndarray, workspace: SmoothingWorkspace, target: np.ndarray
    ) -> np.ndarray:
        """Smooth each line of ``lines``; return ``(n_out, lines)`` float32.

        ``lines`` is ``(m, n_in)``, or ``(m, k, n_in)`` for ``m * k`` lines (a strided view
        of a volume's box, read without a copy), float32 or integers of up to 16 bits.

        Sums are formed in float64 and rounded to float32 once, as scipy's ``correlate1d``
        does on a float32 array, so the result is scipy's to the last bit (barring ties).
        Lines go through in groups of ``workspace.lines_per_group``, so the float64 scratch stays
        small; each line's sums do not depend on the grouping. The result is a view of
        ``target`` (1-D float32, not overlapping ``lines``: groups are written while later
        ones are still to be read), valid until its next use.
        """
        lines_per_row = int(np.prod(lines.shape[1:-1]))  # (m, n_in) or (m, k, n_in)
        n_lines = lines.shape[0] * lines_per_row
        rounded = target[: self.n_out * n_lines].reshape(self.n_out, n_lines)
        rows_per_group = max(workspace.lines_per_group // lines_per_row, 1)
        for first_row in range(0, lines.shape[0], rows_per_group):
            group = lines[first_row : first_row + rows_per_group]
            wide = workspace.wide[: group.size].reshape(group.shape)
            np.copyto(wide, group)  # any real dtype; float32 and smaller integers are exact
            wide = wide.reshape(-1, wide.shape[-1])
            out = workspace.sums[: self.n_out * wide.shape[0]].reshape(self.n_out, -1)
            for out_start, out_stop, in_start, in_stop, matrix in self.blocks:
                np.matmul(matrix, wide[:, in_start:in_stop].T, out=out[out_start:out_stop])
            first = first_row * lines_per_row
            np.copyto(rounded[:, first : first + wide.shape[0]], out)
        return rounded


@dataclass(frozen=True)
class SmoothingWorkspace:
    """Reusable buffers of one thread's smoothing (allocating them per volume costs more
    than the smoothing, in page faults).

    Attributes
    ----------
    wide : ndarray, float64, 1-D
        A group of a pass's input lines in float64.
    sums : ndarray, float64, 1-D
        That group's sums.
    rounded, spare : ndarray, float32, 1-D
        Passes' outputs, rounded: each pass reads one and writes the other. ``spare`` is
        None where the caller lets the smoothed box be overwritten (it then serves as one).
    lines_per_group : int
        Lines smoothed together (``wide`` and ``sums`` hold that many of the longest axis).
    """

    wide: np.ndarray
    sums: np.ndarray
    rounded: np.ndarray
    spare: np.ndarray | None
    lines_per_group: int = LINES_PER_GROUP


def plan_axis_pass(n_voxels: int, keep: slice, sigma_vox: float) -> AxisPass:
    """Blocks of the banded smoothing operator of one axis, rows ``keep`` only."""
    operator = axis_operator(n_voxels, sigma_vox)[keep]
    radius = gaussian_weights(sigma_vox).size // 2
    block_rows = max(MIN_BLOCK_ROWS, 4 * radius)
    blocks = []
    for start in range(0, operator.shape[0], block_rows):
        part = operator[start : start + block_rows]
        used = np.flatnonzero(part.any(axis=0))
        in_start, in_stop = int(used[0]), int(used[-1]) + 1
        matrix = np.ascontiguousarray(part[:, in_start:in_stop])
        blocks.append((start, start + part.shape[0], in_start, in_stop, matrix))
    return AxisPass(blocks=tuple(blocks), n_out=operator.shape[0])


@dataclass(frozen=True)
class BoxSmoother:
    """Gaussian smoothing of a box, keeping an inner region (the mask's bounding box).

    Attributes
    ----------
    passes : tuple of AxisPass
        The x, y and z passes.
    in_shape : tuple of int
        Box shape (x, y, z).
    out_shape : tuple of int
        Kept region shape (x, y, z).
    """

    passes: tuple[AxisPass, AxisPass, AxisPass]
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]

    def apply(self, box: np.ndarray, workspace: SmoothingWorkspace | None = None) -> np.ndarray:
        """Smooth a box volume; return the kept region.

        Parameters
        ----------
        box : ndarray, shape ``in_shape``
            float32 in Fortran order, or any view of float32 or integers of up to 16 bits
            (exact in float64, as scipy's float32 copy is) with a ``workspace`` that has a
            ``spare`` buffer. Not modified, unless ``workspace`` has no ``spare`` buffer: the
            box is then overwritten (it is not read after the first pass).
        workspace : SmoothingWorkspace, optional
            Buffers from `workspace` (reused across calls by one thread); new ones if None.

        Returns
        -------
        ndarray, shape ``out_shape``, float32, Fortran order
            Equal (bit for bit, barring rounding ties) to ``gaussian_filter1d`` along x, y
            and z on the box (reflected boundaries), cropped to the kept region. A view of
            the workspace, valid until its next use.
        """
        _, n_y, n_z = self.in_shape
        out_x, out_y, out_z = self.out_shape
        workspace = workspace or self.workspace()
        first, second = workspace.rounded, workspace.spare  # each pass reads one, writes other
        if second is None:
            second = box.reshape(-1, order="F")  # a view: box is contiguous (Fortran)
        lines = box.T  # (z, y, x): x contiguous
        lines = self.passes[0].apply(lines, workspace, first).reshape(out_x * n_z, n_y)
        lines = self.passes[1].apply(lines, workspace, second).reshape(out_y * out_x, n_z)
        smoothed = self.passes[2].apply(lines, workspace, first)  # (z', y' * x')
        return smoothed.reshape(out_z, out_y, out_x).T

    def workspace(
        self, spare: bool = True, lines_per_group: int = LINES_PER_GROUP
    ) -> SmoothingWorkspace:
        """Buffers for `apply`, large enough for every pass (one set per thread).

        Without ``spare``, `apply` overwrites the box it smooths instead of a buffer of
        its own (one volume's worth of memory less per thread). ``lines_per_group``: see
        `LINES_PER_GROUP` (the result does not depend on it).
        """
        n_in = int(np.prod(self.in_shape))
        n_wide = lines_per_group * max(self.in_shape)
        return SmoothingWorkspace(
            wide=np.empty(n_wide),
            sums=np.empty(n_wide),
            rounded=np.empty(n_in, dtype=np.float32),
            spare=np.empty(n_in, dtype=np.float32) if spare else None,
            lines_per_group=lines_per_group,
        )


def plan_box_smoother(
    in_shape: tuple[int, int, int], keep: tuple[slice, slice, slice], sigma_vox: np.ndarray
) -> BoxSmoother:
    """Prepare the smoothing of a box of ``in_shape`` voxels whose region ``keep`` is kept.

    Parameters
    ----------
    in_shape : tuple of int
        Shape (x, y, z) of the box that is smoothed (reflected at its faces).
    keep : tuple of slice
        Region of the box whose smoothed values are wanted (slices with explicit bounds).
    sigma_vox : ndarray, shape (3,)
        Sigma per axis in voxels; zero leaves an axis unsmoothed.

    Returns
    -------
    BoxSmoother
    """
    passes = tuple(
        plan_axis_pass(n, region, float(sigma))
        for n, region, sigma in zip(in_shape, keep, sigma_vox, strict=True)
    )
    out_shape = tuple(p.n_out for p in passes)
    return BoxSmoother(passes=passes, in_shape=tuple(in_shape), out_shape=out_shape)
