"""The built-in recipes: what they are, their per-profile calibration, and strict loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler.lab import recipes
from scaler.lab.recipes import RecipeError
from scaler.sim import profiles
from tests.lab.helpers import load, recipe

REPO = Path(__file__).resolve().parents[2]


def test_the_builtin_recipes_are_the_issues_six_the_planner_and_the_oracle_without_foresight() -> None:
    names = [p.name for p in recipes.builtin()]
    assert names == [
        "kedify-vllm",
        "llmd-token-aware",
        "oracle",
        "oracle-reactive",
        "planner",
        "shipped",
        "static-best",
        "static-peak",
    ]
    kinds = {n: recipe(n).policy for n in names}
    assert kinds["static-peak"] == "static" and kinds["static-best"] == "static-best"
    assert kinds["oracle"] == "oracle" and kinds["shipped"] == "scaledobjects"
    assert kinds["oracle-reactive"] == "oracle"
    assert recipe("oracle").foresight and not recipe("oracle-reactive").foresight


@pytest.mark.skipif(not (REPO / "manifests" / "keda").is_dir(), reason="not a checkout")
def test_shipped_is_manifests_keda_by_reference(tmp_path: Path) -> None:
    shipped = recipe("shipped")
    sources = {Path(src).resolve() for _, src in shipped.documents}
    assert sources == {(REPO / "manifests" / "keda" / f).resolve() for f in
                       ("scaledobject-prefill.yaml", "scaledobject-decode.yaml")}  # fmt: skip
    on_l4 = shipped.scaled_objects(load(tmp_path))
    assert {so.name for so in on_l4} == {"pd-prefill", "pd-decode"}


def _guide_peak_prefill_throughput(p: profiles.Profile) -> float:
    """llm-d's calibrate.sh: CHUNK_SIZE / TTFT of a CHUNK_SIZE-token prompt on an idle P/D stack."""
    chunk = p.max_num_batched_tokens
    ttft_ms = p.prefill_ms(chunk, chunk**2) + p.kv_transfer_s(chunk) * 1000 + p.decode_ms(1, chunk)
    return chunk / (ttft_ms / 1000)


@pytest.mark.parametrize("name", list(profiles.library()))
def test_llmd_divisor_is_its_calibration_procedure_on_each_profile(name: str, tmp_path: Path) -> None:
    from dataclasses import replace

    scenario = replace(load(tmp_path), profile=profiles.named(name))
    (prefill,) = [so for so in recipe("llmd-token-aware").scaled_objects(scenario) if "prefill" in so.target]
    query = prefill.triggers[0].metadata["query"]
    divisor = float(query.split("/")[1].split(")")[0])
    assert divisor == pytest.approx(_guide_peak_prefill_throughput(profiles.named(name)), rel=0.001)
    assert 'endpoint_name=~".*prefill.*"' in query and 'producer_name="inflight-load-producer"' in query


def test_the_scenario_limits_replace_every_recipes_own(tmp_path: Path) -> None:
    scenario = load(tmp_path)  # limits: prefill [1, 2], decode [1, 3]
    for name in ("shipped", "kedify-vllm", "llmd-token-aware"):
        by_target = {so.target: so for so in recipe(name).scaled_objects(scenario)}
        assert (
            by_target[scenario.prefill_deployment].min_replicas,
            by_target[scenario.prefill_deployment].max_replicas,
        ) == (1, 2)
        assert (
            by_target[scenario.decode_deployment].min_replicas,
            by_target[scenario.decode_deployment].max_replicas,
        ) == (1, 3)


def _recipe_dir(tmp_path: Path, spec: str, lab: str | None = None) -> Path:
    d = tmp_path / "broken"
    d.mkdir()
    (d / "so.yaml").write_text(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: b}\n"
        "spec:\n  scaleTargetRef: {name: pd-llm-d-modelservice-decode}\n" + spec
    )
    if lab is not None:
        (d / "lab.yaml").write_text(lab)
    return d


def test_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    scenario = load(tmp_path)
    typo = _recipe_dir(tmp_path, "  maxReplicaCout: 3\n  triggers: [{type: external, metadata: {query: x}}]\n")
    with pytest.raises(RecipeError, match=r"so\.yaml: spec\.maxReplicaCout: unknown key"):
        recipes.load(typo).scaled_objects(scenario)
    (typo / "so.yaml").unlink()
    (typo / "so.yaml").write_text("kind: ScaledObject\nspec: [1\n")
    with pytest.raises(RecipeError, match=r"so\.yaml"):
        recipes.load(typo)
    for lab, error in [
        ("policy: magic", r"policy: 'magic'"),
        ("polcy: static", r"unknown key 'polcy'"),
        ("policy: oracle\nforesight: 'no'", r"foresight: 'no' is not true or false"),
        ("policy: static\nforesight: false", r"foresight: applies to policy: oracle only, not static"),
    ]:
        (typo / "lab.yaml").write_text(lab + "\n")
        with pytest.raises(RecipeError, match=r"lab\.yaml: " + error):
            recipes.load(typo)


@pytest.mark.parametrize("name", ["shipped", "kedify-vllm", "llmd-token-aware"])
def test_recipes_are_scaledobjects_keda_accepts_on_every_profile(name: str, tmp_path: Path) -> None:
    import copy
    from dataclasses import replace

    from scaler.sim import manifests
    from tests.manifests import k8svalidate

    r = recipe(name)
    for profile in [None, *r.calibration]:
        docs = [copy.deepcopy(d) for d, _ in r.documents]
        for target, ops in r.calibration.get(profile or "", ()):
            for doc in docs:
                if doc["metadata"]["name"] == target:
                    manifests.json_patch(doc, ops, profile or "")
        for doc in docs:
            result = k8svalidate.validate(doc)
            assert result.status == "OK", (profile, result)
    scenario = replace(load(tmp_path), limits={})
    assert len(r.scaled_objects(scenario)) == 2  # one per role
