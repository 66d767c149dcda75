"""General facts about the study (docs/study.md) that the report needs beside the runs.

Each table's own facts (its baseline row, the study's number per row, the reading each row runs)
are in its experiment file (conf/experiment/table*.yaml), recorded by every run of the table:
the report reads them from the runs (pyramid_lab.report.table_block).
"""

from __future__ import annotations

# The data set of the study's numbers (the data source class a run records as ``dataset``): beside
# a run on other data they would mislead, so the report leaves them out there.
STUDY_DATASET = "CINIC10"
# CINIC-10's test split, on which every number of the study was measured (one seed each).
STUDY_TEST_IMAGES = 90_000
# Assumptions, not measurements of the study (which ran one seed and kept no predictions): models at
# 88-91% disagree on 5-8% of the test images, and one recipe's test accuracy varies by 0.1-0.2
# points from seed to seed on 90,000 images (both as measured in issue 19; `python -m
# pyramid_lab.report plan` answers for other values).
ASSUMED_DISAGREEMENT = (0.05, 0.08)
ASSUMED_SEED_SD = (0.1, 0.2)
