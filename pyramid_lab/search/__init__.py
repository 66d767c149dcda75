"""A budget-aware, resumable Optuna search over the ablation space (docs/search.md).

``python -m pyramid_lab experiment=search_budget`` runs it through the Hydra sweeper in
``hydra_plugins/pyramid_lab_search``, which is a thin adapter over :mod:`pyramid_lab.search.sweep`.

Modules: ``space`` (Hydra's sweep syntax -> Optuna distributions), ``bookkeeping`` (the Optuna
study's storage, which trials used their slot, resume), ``budget`` (parameter count before
training), ``sweep`` (the ask-and-tell loop), ``scale`` (a scale's keys win over the space),
``pruning`` (the Lightning callback that reports ``val/acc`` per epoch), ``importance`` (PED-ANOVA
for the study's direction), ``results`` (``optimization_results.yaml`` and the winner's config),
``report`` (the report's search section) and ``summary`` (the Hydra callback that ends a search).
``space``, ``bookkeeping``, ``importance``, ``results`` and ``report`` import no torch; nothing is
imported here, so that the report stays light.
"""
