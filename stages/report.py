"""report: every metrics/ and results/ output of the run -> reports/ (docs/design.md section 6).

-> reports/index.html (offline, one section per claim of the paper), reports/report.md (the same, for
   GitHub), reports/figures/*.png, reports/summary.json (headline numbers as DVC metrics).
"""

import logging
import sys
from functools import partial
from pathlib import Path

from fli2moe.datasets.enrico import image_path
from fli2moe.report.build import build_report
from fli2moe.report.outputs import RunOutputs
from fli2moe.stage_args import open_stage, refusals


def main() -> int:
    args, params = open_stage("report", __doc__, dataset=False,
                              options=lambda parser: parser.add_argument("--out", default="reports"))
    with refusals(args.label):
        run = RunOutputs(Path("."), tuple(params.datasets), tuple(params.models), tuple(params.moe_plain_datasets),
                         {d: params.train.for_dataset(d).token_dropout for d in params.datasets})
        run.manifests  # every dataset's feature set must be there before any drawing starts
    # The datasets whose modalities are all pictures on disk get their maps drawn over the real images.
    image_files = {"enrico": partial(image_path, params.data["enrico"].root)} if "enrico" in params.datasets else {}
    summary = build_report(run, args.out, image_files)
    logging.info("report: %s in %s/index.html", ", ".join(f"{n} {s}" for s, n in summary["claims"].items()),
                 args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
