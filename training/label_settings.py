"""The label settings of a model run, as MLflow params, and comparing two runs'.

A model's figures mean something only for the label it predicts: the gate compares
two runs only when their label settings are equal. The settings are taken
generically from the target's config section (`targets.<target>`), so a setting
added there later is logged and compared too, plus the target's population (which
customers it is trained, tested and scored on).
"""

from __future__ import annotations

from core.config import ProjectConfig
from features.definition import population_name

PREFIX = "label."
# runs trained before the label settings were logged have only this param
LEGACY = "horizon_days"
# the churn definition that reads the grace period; other definitions ignore it
CONTRACT = "contract"


def population(config: ProjectConfig, target: str) -> str:
    """The name of the target's population (features.definition.population_name:
    `active_not_churned`, `seen`, `seen_within_<N>d`)."""
    return population_name(config, target)


def label_params(config: ProjectConfig, target: str) -> dict[str, str]:
    """`label.<setting>` -> value for the settings that apply to `target`: its config
    section's fields (unset ones left out) and `label.population`."""
    section = getattr(config.targets, target, None)
    values = section.model_dump(mode="json") if section is not None else {}
    if "grace_days" in values and values.get("definition") != CONTRACT:
        del values["grace_days"]  # read by contract churn only
    settings = {k: str(v) for k, v in values.items() if v is not None}
    settings["population"] = population(config, target)
    return {PREFIX + k: v for k, v in sorted(settings.items())}


def of_run(params: dict[str, str]) -> dict[str, str] | None:
    """The `label.*` params of a run, or None for a run trained before they were
    logged."""
    found = {k: v for k, v in params.items() if k.startswith(PREFIX)}
    return found or None


def compared(params: dict[str, str]) -> dict[str, str]:
    """What a run's params say of its label: its `label.*` params, or for an older
    run only `label.horizon_days` (from its `horizon_days`)."""
    found = of_run(params)
    if found is not None:
        return found
    return {PREFIX + LEGACY: params[LEGACY]} if LEGACY in params else {}


def differences(
    target: str,
    challenger: dict[str, str],
    champion_params: dict[str, str],
) -> tuple[list[str], str | None]:
    """What differs between the challenger's label settings and the champion run's
    (`<target>.<setting>: <champion value> (champion) vs <challenger value>
    (challenger)`), and a note when the champion logged none (older runs: only
    `horizon_days` is compared)."""
    champion = of_run(champion_params)
    note = None
    if champion is None:
        note = (
            "the champion's run logs no label settings (trained before they were "
            "logged): only horizon_days compared"
        )
        key = PREFIX + LEGACY
        champion = {key: champion_params[LEGACY]} if LEGACY in champion_params else {}
        challenger = {key: challenger[key]} if key in challenger else {}
    out = []
    for key in sorted(set(champion) | set(challenger)):
        a, b = champion.get(key), challenger.get(key)
        if a != b:
            out.append(
                f"{target}.{key[len(PREFIX) :]}: {a or '(unset)'} (champion) vs "
                f"{b or '(unset)'} (challenger)"
            )
    return out, note
