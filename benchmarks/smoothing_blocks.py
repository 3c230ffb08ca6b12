"""Smoothing one MNI volume: output rows per dense block and lines per group, against time.

``python benchmarks/smoothing_blocks.py [--workdir DIR] [--volumes 20] [--repeats 5]``

Takes the first ``--volumes`` volumes of `streaming.py`'s 200-volume run (2 mm MNI grid,
int16, written there first if absent) and times `bids_glm.image.smooth.BoxSmoother.apply`,
as the streamed reading calls it (the mask's box, only what the in-mask voxels need), in
this process with single-threaded BLAS:

* at FWHM 3, 5, 8 and 12 mm (kernel radius 3, 4, 7 and 10 voxels), with dense blocks of 4,
  6, 8, 12, 16 and 24 output rows (`smooth.BLOCK_ROWS`), 2,048 lines per group;
* at 5 mm with 8-row blocks, groups of 512, 1,024, 2,048 and 4,096 lines
  (`smooth.LINES_PER_GROUP`).

Configurations take turns in each repeat (the host's slow moments spread over all of them);
the table shows the median over repeats of each one's ms a volume. Every configuration's
in-mask values must equal, to the bit, those of the plan a run makes (`VolumeReducer`'s
smoother; the sums per output do not depend on the blocking): the script stops otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")  # bids-glm's BLAS is single-threaded per worker

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from streaming import make_run, preproc_path  # noqa: E402

from bids_glm.image import smooth  # noqa: E402
from bids_glm.image.mask import bounding_box  # noqa: E402
from bids_glm.image.series_layout import series_layout  # noqa: E402
from bids_glm.image.volume_reducer import VolumeReducer  # noqa: E402

FWHMS_MM = (3.0, 5.0, 8.0, 12.0)
BLOCK_ROWS = (4, 6, 8, 12, 16, 24)
LINES = (512, 1024, 2048, 4096)


def _smoother(mask, sigma_vox, block_rows: int, lines: int) -> smooth.BoxSmoother:
    """The plan `VolumeReducer` makes, with ``block_rows`` and ``lines`` instead of the
    module's constants."""
    saved = smooth.BLOCK_ROWS
    smooth.BLOCK_ROWS = block_rows
    try:
        box = bounding_box(mask, smooth.kernel_radius_voxels(sigma_vox))
        kept = bounding_box(mask, (0, 0, 0))
        keep = tuple(
            slice(k.start - b.start, k.stop - b.start) for k, b in zip(kept, box, strict=True)
        )
        shape = tuple(b.stop - b.start for b in box)
        return smooth.plan_box_smoother(shape, keep, sigma_vox, mask[kept], lines)
    finally:
        smooth.BLOCK_ROWS = saved


def _ms_per_volume(smoother, workspace, volumes, box) -> tuple[float, np.ndarray]:
    """Mean ms a volume of smoothing ``volumes`` (after one volume to warm the caches), and
    the last one's in-mask values."""
    smoother.apply(volumes[-1][box], workspace)
    started = time.perf_counter()
    for volume in volumes:
        region = smoother.apply(volume[box], workspace)
    return 1000 * (time.perf_counter() - started) / len(volumes), region


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = Path(__import__("tempfile").gettempdir()) / "bids_glm_stream_bench"
    parser.add_argument("--workdir", type=Path, default=default_dir)
    parser.add_argument("--volumes", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    bold = preproc_path(make_run(args.workdir, 200))
    mask_path = next(bold.parent.glob("*_desc-brain_mask.nii.gz"))
    mask_image = nib.load(mask_path)
    mask = np.asanyarray(mask_image.dataobj) > 0
    stored = np.asarray(nib.load(bold).dataobj[..., : args.volumes])
    volumes = [np.asfortranarray(stored[..., t]) for t in range(stored.shape[-1])]
    layout = series_layout(bold)
    configurations = [(fwhm, rows, 2048) for fwhm in FWHMS_MM for rows in BLOCK_ROWS]
    configurations += [(5.0, 8, lines) for lines in LINES if lines != 2048]
    plans, expected = {}, {}
    for fwhm, rows, lines in configurations:
        sigma_vox = smooth.sigma_voxels(fwhm, mask_image.affine)
        reducer = VolumeReducer(mask, sigma_vox, np.zeros((1, 1)), layout)
        if fwhm not in expected:  # the plan a run uses: every configuration must match it
            default = reducer.smoother
            region = default.apply(volumes[-1][reducer.box], default.workspace())
            expected[fwhm] = region.ravel(order="C")[reducer.in_mask].copy()
        smoother = _smoother(mask, sigma_vox, rows, lines)
        plans[fwhm, rows, lines] = (smoother, smoother.workspace(), reducer)
    times: dict[tuple, list[float]] = {key: [] for key in configurations}
    for repeat in range(args.repeats):
        for key in configurations:
            smoother, workspace, reducer = plans[key]
            ms, region = _ms_per_volume(smoother, workspace, volumes, reducer.box)
            times[key].append(ms)
            values = region.ravel(order="C")[reducer.in_mask]
            if not np.array_equal(values, expected[key[0]]):
                print(f"FWHM {key[0]} mm, {key[1]} rows, {key[2]} lines: values differ")
                return 1
        print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    median = {key: statistics.median(values) for key, values in times.items()}
    print(f"\nms a volume ({args.volumes} volumes of {bold.name}), groups of 2,048 lines")
    print("FWHM mm  radius" + "".join(f"{rows:>8} rows"[-9:] for rows in BLOCK_ROWS))
    for fwhm in FWHMS_MM:
        radius = smooth.kernel_radius_voxels(smooth.sigma_voxels(fwhm, mask_image.affine))
        cells = "".join(f"{median[fwhm, rows, 2048]:>9.2f}" for rows in BLOCK_ROWS)
        print(f"{fwhm:>7g}{int(radius[0]):>8}{cells}")
    print("\n5 mm, blocks of 8 rows, by lines per group")
    for lines in LINES:
        print(f"{lines:>7} lines{median[5.0, 8, lines]:>9.2f}")
    print(f"\ndefault: {smooth.BLOCK_ROWS} rows, {smooth.LINES_PER_GROUP} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
