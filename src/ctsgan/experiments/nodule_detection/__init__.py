"""The downstream proof (paper Figure 3): 3D SqueezeNet nodule detection on real, synthetic and
synthetic-pre-trained + real-fine-tuned data.

What the classifier sees
    One whole volume per sample: the (z, y, x) HU cube is windowed to [-1024, 600] HU, mapped
    linearly to [0, 1], and resampled to ``input_size``^3 (area averaging when shrinking,
    trilinear when growing). The label is volume-level "has at least one nodule". This is the
    paper's task (nodule presence per volume); every regime and split goes through the same
    function, :func:`hu_to_classifier_input`.

Dataset construction (Figure 3(a))
    Real set (a prepared dataset dir): within each split, about half of the nodule scans get
    their nodules erased (label 0) and the rest keep them (label 1); about half of the clean
    scans get nodules injected (label 1) and the rest stay clean (label 0), chosen so that each
    split is balanced exactly (one extra negative when its size is odd). The split of every scan
    is the manifest's; a patient whose scans sit in two splits is an error.
    Synthetic set (a folder of generated volumes): half get nodules injected (label 1), half
    stay clean; a held-out fraction (``synthetic_val_fraction``) selects the model in the
    synthetic-only regime, so that regime never sees real data before the test.
    Injected nodules have the experiment cell's diameter (**mm**); real nodules that are kept
    keep their own sizes. The number of nodules per injected scan is the injector's choice
    (the GAN injector draws it from the LIDC distribution).

Injector and eraser are passed in as callables (dependency injection), so tests use simple
deterministic fakes and the CLI uses the GAN-based ones:

    inject_fn(hu, spacing_zyx, rng, diameter_mm) -> (hu, [(centre_zyx, diameter_mm), ...])
    erase_fn(hu, spacing_zyx, [(centre_zyx, diameter_mm), ...]) -> hu

Regimes per (size, seed) cell: ``real`` (train on real train, select on real validation),
``synthetic`` (train on synthetic train, select on synthetic validation) and
``pretrain-finetune`` (the ``synthetic`` cell's selected model, fine-tuned on real train,
selected on real validation). All three are tested on the balanced real test split. The seed
sets the classifier's initial weights (the same for ``real`` and ``synthetic``), the batch
order, and which scans get nodules erased / injected and where.

Output dir: ``config.yaml`` (training settings; a resume with other settings is refused),
``cells/<regime>_d<size>_s<seed>.json`` (one per finished cell, written atomically),
``checkpoints/synthetic_d<size>_s<seed>.pt`` (pre-trained weights for fine-tuning),
``results.csv``, ``summary.md`` and ``accuracy_vs_size.png``.

Modules: :mod:`.config` (named choices, the config, callable types), :mod:`.views` (what the
classifier sees), :mod:`.data` (the labelled real and synthetic sets), :mod:`.training` (one
classifier's training and evaluation), :mod:`.stats` (intervals, paired differences),
:mod:`.grid` (the cells, the visibility check and the run over them) and :mod:`.report`
(results, the verdict of the positive control, CSV, summary, plot). Everything public is importable from here.
"""


from __future__ import annotations

from ctsgan.experiments.nodule_detection.config import (
    DetectionConfig,
    EraseFn,
    InjectFn,
    InputView,
    NoduleModel,
    NoduleSpec,
    Origin,
    Regime,
    ViewFn,
    parse_regime,
    parse_view,
)
from ctsgan.experiments.nodule_detection.data import (
    LabelledVolume,
    build_real_set,
    build_synthetic_set,
    list_synthetic_volumes,
    make_nodule_fns,
    patients_crossing_splits,
)
from ctsgan.experiments.nodule_detection.grid import (
    check_nodules_visible,
    nodule_input_voxels,
    run_cell,
    run_experiment,
)
from ctsgan.experiments.nodule_detection.report import (
    COMPARISONS,
    RESULT_COLUMNS,
    CellKey,
    CellResult,
    ExperimentReport,
    comparison,
    difference_table,
    interval_table,
    plot_accuracy_vs_size,
    read_cell_results,
    regime_outcomes,
    summary_table,
    verdict,
    write_outputs,
    write_results_csv,
)
from ctsgan.experiments.nodule_detection.stats import (
    Z95,
    Estimate,
    accuracy_estimate,
    mcnemar_p,
    paired_difference,
    wilson_interval,
)
from ctsgan.experiments.nodule_detection.training import (
    TensorSet,
    TrainOutcome,
    evaluate_classifier,
    limit_training_set,
    test_outcomes,
    train_classifier,
)
from ctsgan.experiments.nodule_detection.views import (
    cached_lung_mask,
    hu_to_classifier_input,
    lung_candidate,
    make_view,
    voi_classifier_input,
)

__all__ = [
    "COMPARISONS",
    "CellKey",
    "CellResult",
    "DetectionConfig",
    "EraseFn",
    "Estimate",
    "ExperimentReport",
    "InjectFn",
    "InputView",
    "LabelledVolume",
    "NoduleModel",
    "NoduleSpec",
    "Origin",
    "RESULT_COLUMNS",
    "Regime",
    "TensorSet",
    "TrainOutcome",
    "ViewFn",
    "Z95",
    "accuracy_estimate",
    "build_real_set",
    "build_synthetic_set",
    "cached_lung_mask",
    "check_nodules_visible",
    "comparison",
    "difference_table",
    "evaluate_classifier",
    "hu_to_classifier_input",
    "interval_table",
    "limit_training_set",
    "list_synthetic_volumes",
    "lung_candidate",
    "make_nodule_fns",
    "make_view",
    "mcnemar_p",
    "nodule_input_voxels",
    "paired_difference",
    "parse_regime",
    "parse_view",
    "patients_crossing_splits",
    "plot_accuracy_vs_size",
    "read_cell_results",
    "regime_outcomes",
    "run_cell",
    "run_experiment",
    "summary_table",
    "test_outcomes",
    "train_classifier",
    "verdict",
    "voi_classifier_input",
    "wilson_interval",
    "write_outputs",
    "write_results_csv",
]
