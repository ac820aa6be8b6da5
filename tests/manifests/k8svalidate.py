"""Offline, strict validation of Kubernetes objects and Helm values, as the API server would.

Vendored from the project's shared ``validate-manifests`` tool (its document loader, CRD
schema lookup, default filling and error wording), as an in-process module so the tests
need nothing outside this repository:

* core kinds (Deployment, Service, ...) are checked against the strict Kubernetes OpenAPI
  schemas bundled in PyPI ``kubernetes-validate`` (pinned in requirements-dev.txt), where an
  unknown field is an error, as with ``kubernetes-validate --strict``;
* custom resources are checked against the JSON Schemas in ``schemas/`` beside this file
  (see its README for their upstream sources and versions);
* like kubectl and the API server, YAML duplicate keys are rejected, ``2024-01-01`` stays a
  string, ``null`` fields are dropped and CRD ``default`` values are filled in first.

A kind with no schema is reported as ``SKIP``; callers decide which kinds may be skipped.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jsonschema
import yaml
from kubernetes_validate import utils as kvu
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parent / "schemas"
K8S_VERSION = "1.32"
"""Kubernetes version whose core schemas apply (the oldest release the manifests support)."""

Status = Literal["OK", "FAIL", "SKIP"]


@dataclass(frozen=True)
class Result:
    status: Status
    what: str
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.status} {self.what}" + (f": {self.reason}" if self.reason else "")


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and keeps timestamps as strings."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


# The API server reads 2024-01-01 as a string; PyYAML would make a date.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# A bare "=" is a value-tag in YAML 1.1; Kubernetes reads it as the string "=".
_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: str(node.value))


def load_documents(text: str) -> list[Any]:
    """Every non-empty document of a YAML stream, ``kind: List`` expanded."""
    docs: list[Any] = []
    for doc in yaml.load_all(text, Loader=_Loader):
        if doc is not None:
            docs.extend(_expand_lists(doc))
    return docs


def _expand_lists(doc: Any) -> list[Any]:
    if (
        isinstance(doc, dict)
        and str(doc.get("kind", "")).endswith("List")
        and isinstance(doc.get("items"), list)
        and "spec" not in doc
    ):
        return [d for item in doc["items"] for d in _expand_lists(item)]
    return [doc]


def _prune_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


def _apply_defaults(value: Any, schema: Any) -> None:
    """Fill in ``default``s in place, as the API server does before validating a CR."""
    if not isinstance(schema, dict):
        return
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name, sub in props.items():
            if name not in value and isinstance(sub, dict) and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
        for name, sub_value in value.items():
            _apply_defaults(sub_value, props.get(name, schema.get("additionalProperties")))
    elif isinstance(value, list):
        for item in value:
            _apply_defaults(item, schema.get("items"))


def _make_validator(schema: dict[str, Any]) -> Any:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


@functools.cache
def _crd_validator(group: str, version: str, kind: str) -> Any:
    path = SCHEMAS / f"{kind.lower()}-{group}-{version}.json"
    return _make_validator(json.loads(path.read_text())) if path.is_file() else None


class _CoreSchemas:
    """The strict core-kind schemas of one Kubernetes version, loaded lazily."""

    def __init__(self, k8s_version: str) -> None:
        wanted = kvu.major_minor(k8s_version)
        matches = [v for v in kvu.all_versions() if kvu.major_minor(v) == wanted]
        assert matches, f"kubernetes-validate has no schemas for Kubernetes {k8s_version}"
        self.root = importlib.resources.files("kubernetes_validate").joinpath(
            "kubernetes-json-schema", f"v{matches[-1]}-local-strict"
        )
        defs = json.loads(self.root.joinpath("_definitions.json").read_text())
        self.registry: Registry[Any] = Resource.from_contents(defs) @ Registry()

    @functools.cache  # noqa: B019 - one instance per Kubernetes version, kept for the run
    def validator(self, api_version: str, kind: str) -> Any:
        # Same file naming as kubernetes_validate.utils.validate().
        group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        ref = self.root.joinpath(f"{kind.lower()}-{group_version}.json")
        if not ref.is_file():
            return None
        schema = json.loads(ref.read_text())
        return jsonschema.Draft202012Validator(schema, registry=Resource.from_contents(schema) @ self.registry)


@functools.cache
def _core(k8s_version: str) -> _CoreSchemas:
    return _CoreSchemas(k8s_version)


def _json_path(parts: Iterable[Any]) -> str:
    out = "$"
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", str(p)):
            out += f".{p}"
        else:
            out += f"[{json.dumps(p)}]"
    return out


def _describe(error: Any) -> list[str]:
    """One jsonschema error as ``$.json.path: reason`` lines."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = error.schema.get("properties", {})
        patterns = error.schema.get("patternProperties", {})
        extra = [k for k in error.instance if k not in known and not any(re.search(p, k) for p in patterns)]
        return [f'{_json_path([*path, k])}: unknown field "{k}"' for k in extra]
    if error.validator == "required":
        missing = re.match(r"'(.*)' is a required property", error.message)
        return [f"{_json_path([*path, missing.group(1) if missing else '?'])}: required field missing"]
    if error.validator in ("anyOf", "oneOf") and error.context:
        inner = _describe(jsonschema.exceptions.best_match(error.context))
        return [f"matches no {error.validator} alternative, e.g. {inner[0]}"] if inner else []
    return [f"{_json_path(path)}: {' '.join(error.message.split())[:200]}"]


def _problems(validator: Any, doc: Any, max_errors: int = 5) -> str:
    found: list[str] = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        found.extend(_describe(err))
    shown = found[:max_errors] + ([f"(+{len(found) - max_errors} more)"] if len(found) > max_errors else [])
    return "; ".join(shown)


def object_id(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return f"{doc.get('kind') or '?'}/{(meta or {}).get('name') or '?'}"


def validate(doc: Any, k8s_version: str = K8S_VERSION) -> Result:
    """Validate one Kubernetes object."""
    if not isinstance(doc, dict):
        return Result("FAIL", "?/?", f"document is a {type(doc).__name__}, not a mapping")
    what = object_id(doc)
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return Result("SKIP", what, "no apiVersion/kind: not a Kubernetes object")
    doc = _prune_nulls(doc)
    group, _, version = api_version.rpartition("/")
    validator = _crd_validator(group, version, kind)
    if validator is not None:
        _apply_defaults(doc, validator.schema)
    elif "." not in group or group.endswith(".k8s.io"):
        validator = _core(k8s_version).validator(api_version, kind)
    if validator is None:
        return Result("SKIP", what, f"no schema for {api_version} {kind}")
    problem = _problems(validator, doc)
    return Result("FAIL" if problem else "OK", what, problem)


def validate_text(text: str, k8s_version: str = K8S_VERSION) -> list[Result]:
    """Validate every object of a YAML stream; a YAML error is one FAIL."""
    try:
        docs = load_documents(text)
    except yaml.YAMLError as exc:
        return [Result("FAIL", "?/?", "YAML error: " + " ".join(str(exc).split()))]
    return [validate(doc, k8s_version) for doc in docs]


def validate_values(values: Any, schema_file: str) -> str:
    """Problems of a Helm values document against a values schema in ``schemas/`` ('' = valid)."""
    validator = _make_validator(json.loads((SCHEMAS / schema_file).read_text()))
    return _problems(validator, values if values is not None else {})
