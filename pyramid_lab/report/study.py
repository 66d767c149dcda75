"""The study's own numbers (docs/study.md): test accuracy in percent, per table and row.

Row keys are the option names our sweeps use, so a report can put the study's number beside ours.
Where the study contradicts itself the table's own value is kept and the other noted.
"""

from __future__ import annotations

# The data set of every number below (the data source class a run records as ``dataset``).
STUDY_DATASET = "CINIC10"

PAPER_TABLES: dict[str, dict[str, float]] = {
    # Table 1, model family (100 epochs, batch 256). PyramidNet is 87.485 everywhere else.
    "table1_models": {
        "vgg16": 71.299,
        "densenet_bc100_k12": 85.839,
        "resnet20": 81.571,
        "resnet110": 81.672,
        "wrn16_4": 79.080,
        "pyramidnet196_a48": 87.520,
    },
    # Table 2, PyramidNet (depth, alpha).
    "table2_depth_alpha": {
        "pyramidnet110_a4_75": 71.709,
        "pyramidnet110_a48": 76.229,
        "pyramidnet128_a64": 87.260,
        "pyramidnet164_a48": 87.407,
        "pyramidnet196_a48": 87.485,
    },
    "table3_schedulers": {"multistep": 87.485, "cosine": 88.563, "exp": 81.633, "plateau": 78.183},
    "table4_optimizers": {"sgd": 87.485, "adadelta": 75.136, "adam": 82.912, "sam": 87.377},
    "table5_activations": {"relu": 87.485, "selu": 79.275, "hardswish": 83.787, "leaky_relu": 87.542},
    "table6_tricks": {
        "baseline": 87.485,
        "gaussian_noise": 62.909,
        "label_smoothing": 87.529,
        "shakedrop": 87.380,
        "augment": 88.134,
    },
    # Table 7: train only vs train + validation merged.
    "table7_merge_val": {"baseline": 87.485, "merge_val": 90.323},
    # Table 8: the abstract gives 91.418 for the final model.
    "table8_final": {"baseline": 87.485, "final": 91.485},
}


def paper_accuracy(table: str | None, row: str | None) -> float | None:
    """The study's test accuracy (%) for a table row, or None where the study has no such row."""
    return PAPER_TABLES.get(table or "", {}).get(row or "")
