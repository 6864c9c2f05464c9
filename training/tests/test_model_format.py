"""config.json as the Python writers (export, quantize) write it is what the model format's
schema, src/model/model-format.schema.json, defines: the schema the TypeScript reader and
writer use."""

import json

import jsonschema
import pytest

from training.__main__ import main

from .conftest import REPO_ROOT, needs_onnx_runtime, needs_shared

SCHEMA = json.loads((REPO_ROOT / "src" / "model" / "model-format.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def check(config: dict) -> None:
    VALIDATOR.validate(config)
    # Nothing the schema leaves undefined, so a reader never ignores a field a writer meant.
    assert set(config) <= set(SCHEMA["properties"])
    for tower in ("vision", "text"):
        assert set(config[tower]) <= set(SCHEMA["$defs"]["tower"]["properties"])


def test_the_schema_refuses_a_bad_config():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    with pytest.raises(jsonschema.ValidationError, match="bf16"):
        VALIDATOR.validate({"vision": {"file": "vision.onnx", "precision": "bf16"}})


@needs_shared
@needs_onnx_runtime
def test_export_and_quantize_write_configs_the_schema_accepts(tiny_export, tmp_path):
    check(json.loads((tiny_export / "config.json").read_text()))
    out = tmp_path / "tiny-fp16"
    args = ["quantize", "--precision", "fp16", "--model-dir", str(tiny_export)]
    assert main(args + ["--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert "check" in config["vision"]
    check(config)
