"""The experiments behind notebooks 02-07: plan the runs of a paper table, run them, report them.

The notebooks stay thin: they validate their parameters, call one sweep, then turn its rows into mean ± std
tables and verdicts. Every name they use is importable from here (``from mmgap import experiments as ex``);
the code lives in one module per job, each importing only the ones above it in this list:

- `settings`: what a sweep varies, the rows of Tables II-VII, `AdaptiveSetting`, the control arm, labels;
- `cluster`: Ray core tasks behind a `concurrent.futures.Executor` (`RayExecutor`, `check_shared_paths`);
- `workers`: runs spread over processes, on any engine (`run_jobs`, `default_workers`, `check_executor`);
- `params`: the notebooks' parameter checks (`check_params`, one call per notebook; `check_seeds`, ...);
- `runs`: one run, reused when finished (`ensure_warmup`, `run_adaptive`, `purify_one`, `baseline_one`);
- `sweeps`: a table's runs for every seed (`run_ablations`, `run_purification`, `run_methods`, `run_arms`),
  finished runs read by the driver and only missing ones submitted (`run_missing`);
- `reporting`: tables, verdicts and the Table II chart from the sweeps' rows;
- and, from `mmgap.cards`, the protocol cards the notebooks print (`protocol_card`, `cards_markdown`).

The names here are the submodules' own objects, re-exported: to patch one in a test, patch it where it is
used (``monkeypatch.setattr(experiments.settings, "RHOS", ...)``), not on this package.

Rows are plain dicts with the test-split metrics of the validation-selected epoch: ``acc``, ``f1``
(macro-F1), ``acc_a``, ``acc_v`` (per-modality accuracy of the logits of Eq. 2), all fractions in [0, 1].

Work is shared wherever the paper's tables overlap:
- one warm-up (Eq. 10) per training seed serves every adaptive and fine-tuning run (Tables III-VI, VII and
  "ours" in II);
  Adam rows of Table IV start from an Adam warm-up, since "same state" carries the warm-up's optimizer state;
- a distinct adaptive setting runs once per seed even when several tables list it (the full model of
  Table III is SGD-reset of IV, GMM(Prob) of V and the preset's ρ, 0.95, of VI);
- a finished run whose settings are identical is reused (its folder name holds a hash of every setting), so
  re-executing a notebook only trains what changed; ``fresh=True`` retrains.
"""

from mmgap.cards import cards_markdown, protocol_card
from mmgap.experiments.cluster import ClusterPathError, RayExecutor, check_shared_paths
from mmgap.experiments.params import (
    Checked,
    check_common,
    check_injected_names,
    check_methods,
    check_params,
    check_run_params,
    check_seeds,
    check_tables,
    check_taus,
    notebook_parameters,
)
from mmgap.experiments.reporting import (
    FAMILY_LABELS,
    METRIC_LABELS,
    PHENOMENA,
    compare,
    describe_ablations,
    describe_group_verdicts,
    describe_purification,
    failures,
    family_of,
    group_verdicts,
    grouped_rows,
    grouped_table,
    phenomena_table,
    plot_method_bars,
    purification_table,
    table_of,
    verdict,
)
from mmgap.experiments.runs import (
    WARMUP_FIELDS,
    adaptive_root,
    adaptive_run_dir,
    baseline_one,
    cache_id,
    ensure_warmup,
    finished_row,
    is_finished,
    methods_root,
    phenomena_fields,
    purify_one,
    run_adaptive,
    warmup_dir,
    warmup_identity,
    warmup_is_compatible,
    warmup_preset,
    warmup_result,
    warmup_test_acc,
)
from mmgap.experiments.settings import (
    ABLATION_ROWS,
    ADAM_LR_RATIO,
    CONTROL,
    CONTROL_LABEL,
    CONTROL_RESET,
    GAP_LABELS,
    METRICS,
    MIXTURE_LABELS,
    OPTIMIZER_ROWS,
    OURS,
    POSTERIOR_ROWS,
    PURIFICATION_CONTROL,
    RHOS,
    TABLE_TITLES,
    TABLES,
    TAUS,
    TIER_METRICS,
    UNIMODAL,
    AdaptiveSetting,
    PlanRow,
    ablation_plan,
    adam_lr_for,
    control_setting,
    distinct_settings,
    loss_config,
    method_label,
    ordered_tables,
    setting_preset,
    setting_warmup_preset,
    table_ii_epochs,
)
from mmgap.experiments.sweeps import (
    ensure_warmups,
    run_ablations,
    run_arms,
    run_methods,
    run_missing,
    run_purification,
)
from mmgap.experiments.workers import EXECUTORS, Job, call_in_worker, check_executor, default_workers, run_jobs

__all__ = [
    # settings
    "ABLATION_ROWS", "ADAM_LR_RATIO", "CONTROL", "CONTROL_LABEL", "CONTROL_RESET", "GAP_LABELS", "METRICS",
    "MIXTURE_LABELS", "OPTIMIZER_ROWS", "OURS", "POSTERIOR_ROWS", "PURIFICATION_CONTROL", "RHOS",
    "TABLE_TITLES", "TABLES", "TAUS", "TIER_METRICS", "UNIMODAL", "AdaptiveSetting", "PlanRow",
    "ablation_plan", "adam_lr_for", "control_setting", "distinct_settings", "loss_config", "method_label",
    "ordered_tables", "setting_preset", "setting_warmup_preset", "table_ii_epochs",
    # cards
    "cards_markdown", "protocol_card",
    # cluster
    "ClusterPathError", "RayExecutor", "check_shared_paths",
    # workers
    "EXECUTORS", "Job", "call_in_worker", "check_executor", "default_workers", "run_jobs",
    # params
    "Checked", "check_common", "check_methods", "check_params", "check_run_params", "check_seeds",
    "check_injected_names", "notebook_parameters", "check_tables",
    "check_taus",
    # runs
    "WARMUP_FIELDS", "adaptive_root", "adaptive_run_dir", "baseline_one", "cache_id", "ensure_warmup",
    "finished_row", "is_finished", "methods_root", "phenomena_fields", "purify_one", "run_adaptive", "warmup_dir",
    "warmup_identity", "warmup_is_compatible", "warmup_preset", "warmup_result", "warmup_test_acc",
    # sweeps
    "ensure_warmups", "run_ablations", "run_arms", "run_methods", "run_missing", "run_purification",
    # reporting
    "FAMILY_LABELS", "METRIC_LABELS", "PHENOMENA", "compare", "describe_ablations", "describe_group_verdicts",
    "describe_purification", "failures", "family_of", "group_verdicts", "grouped_rows", "grouped_table",
    "phenomena_table", "plot_method_bars", "purification_table", "table_of", "verdict",
]

# the course's own explanation (notebooks 04-05): why the method does or does not help, and single-seed verdicts
from mmgap.experiments import explain  # noqa: E402
from mmgap.experiments.reporting import arm_verdicts, resplit  # noqa: E402

__all__ += ["explain", "arm_verdicts", "resplit"]
