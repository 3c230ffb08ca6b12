"""Names of the model choices, importable without numpy (the CLI needs them early)."""

HRF_MODELS: tuple[str, ...] = (
    "glover",
    "spm",
    "glover + derivative",
    "spm + derivative",
    "glover + derivative + dispersion",
    "spm + derivative + dispersion",
    "fir",
    "none",
)
