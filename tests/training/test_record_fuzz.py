"""Property-based tests of what dsc reads from files a stranger may send: the checkpoint record,
the trust check, recorded overrides, an ONNX file's metadata and a COCO annotation file. Random
nested structures, interpolations, resolver calls, odd target spellings and wrong types: none may
run code (a marker file is the oracle) and none may raise anything but dsc's user errors."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsc.contracts import UserError

MARKER = "/tmp/dsc-fuzz-marker"  # what every payload below would create if it ran
TARGETS = [
    "builtins.open", "os.system", "os.makedirs", "subprocess.run", "pathlib.Path.touch", "builtins.exec",
    " builtins.open", "builtins.open ", "BUILTINS.open", "builtins..open", "builtins.open\x00",
    "dsc.training.module.DeepSpectralClustering", "dsc.losses.SpectralLoss", "dsc.rounding.kwikcluster",
    "torch.optim.Adam", "torch.optim.Optimizer", "torch.optim.lr_scheduler.CosineAnnealingLR",
    "pytorch_lightning.callbacks.ModelCheckpoint", "pytorch_lightning.loggers.CSVLogger",
    "pytorch_lightning.Trainer", "torch.optim.os", "pytorch_lightning.callbacks.os.system",
]  # fmt: skip
INTERPOLATIONS = [
    "${oc.create:{_target_:builtins.open,_args_:[" + MARKER + ",w]}}",
    "${oc.env:HOME}", "${dsc_sum:1,2}", "${model.embed_dim}", "\\${oc.env:HOME}", "$" + "{x}", "${",
    "${oc.decode:'{_target_: os.makedirs, _args_: [" + MARKER + "]}'}",
]  # fmt: skip
PAYLOADS = [
    {"_target_": "builtins.open", "_args_": [MARKER, "w"]},
    {"_target_": "os.makedirs", "_args_": [MARKER]},
    {"_target_": "pathlib.Path.touch", "_args_": [MARKER]},
]
KEYS = ["_target_", "_args_", "_partial_", "_recursive_", "model", "embed_dim", "num_classes", "rounding",
        "backbone", "loss", "hydra", "paths", "dsc_config", "x", "${x}", ""]  # fmt: skip

leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True),
    st.sampled_from(TARGETS), st.sampled_from(INTERPOLATIONS), st.text(max_size=20),
    st.sampled_from(PAYLOADS),
)  # fmt: skip
structures = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=5),
    ),
    max_leaves=30,
)
model_sections = st.fixed_dictionaries(
    {"_target_": st.sampled_from(TARGETS), "embed_dim": leaves, "num_classes": leaves},
    optional={"backbone": structures, "loss": structures, "rounding": structures, "odd": structures},
)
configs = st.one_of(
    structures,
    st.fixed_dictionaries({"model": model_sections}, optional={"rounding": structures, "x": structures}),
)
records = st.fixed_dictionaries(
    {"dsc_config": configs, "dsc_class_names": structures},
    optional={
        "dsc_overrides": structures, "dsc_training_images": structures,
        "dsc_embedding_projection": structures, "dsc_wandb_run_id": structures,
    },
)  # fmt: skip
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def no_marker():
    import os
    import shutil

    def clear():
        if os.path.isdir(MARKER):
            shutil.rmtree(MARKER)
        elif os.path.lexists(MARKER):
            os.unlink(MARKER)

    clear()
    yield
    assert not os.path.lexists(MARKER), "a record ran code"
    clear()


def _only_user_errors(call, *args, **kwargs):
    import contextlib
    import os

    with contextlib.suppress(UserError):
        call(*args, **kwargs)
    assert not os.path.lexists(MARKER), "a record ran code"


def test_the_oracle_sees_a_payload_that_runs():
    import os

    import hydra

    hydra.utils.instantiate(PAYLOADS[1])  # what the readers below must never do
    assert os.path.isdir(MARKER)
    os.rmdir(MARKER)


@FUZZ
@given(records)
def test_a_record_builds_a_model_or_is_refused_and_never_runs_code(record):
    from dsc.training.checkpoint_record import RunRecord, build_model, check_trusted

    def load(record):
        run = RunRecord.of(record, "fuzz.ckpt")
        check_trusted(run.config, "fuzz.ckpt")
        run.model_counts("fuzz.ckpt")
        build_model(run.config, source="fuzz.ckpt")

    _only_user_errors(load, record)


@FUZZ
@given(structures, st.lists(st.sampled_from(TARGETS), max_size=2))
def test_the_trust_check_refuses_or_passes_and_never_runs_code(config, trusted):
    from dsc.training.checkpoint_record import check_trusted, untrusted_entries

    _only_user_errors(check_trusted, config, "fuzz.ckpt", trusted)
    if isinstance(config, dict) and not untrusted_entries(config, frozenset(trusted)):
        check_trusted(config, "fuzz.ckpt", trusted)  # what it finds nothing in passes


override_lines = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda key, value: f"{key}={value}",
        st.sampled_from(["seed", "model.embed_dim", "hydra.searchpath", "+callbacks.x._target_", "backbone",
                         "paths.output_dir", "~callbacks", "trainer.default_root_dir", "data.root"]),
        st.one_of(st.sampled_from(INTERPOLATIONS + TARGETS), st.text(max_size=12), st.integers()),
    ),
)  # fmt: skip


@FUZZ
@given(st.lists(override_lines, max_size=4))
def test_recorded_overrides_are_literals_or_refused(lines):
    from pathlib import Path

    from dsc.training.resume import CONFIG_DIR, recorded_literals

    _only_user_errors(recorded_literals, lines, ["ckpt_path=last"], Path("fuzz.ckpt"), CONFIG_DIR)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["dsc_config", "dsc_class_names", "dsc_training_images", "dsc_embedding_projection",
                         "other", "dsc_x"]),
        st.one_of(st.text(max_size=30), structures.map(lambda s: json.dumps(s, default=str)),
                  st.just("[" * 50_000 + "]" * 50_000)),
        max_size=5,
    )
)  # fmt: skip
def test_onnx_metadata_give_a_record_or_are_refused(metadata):
    from dsc.deploy.onnx_runtime import record_of_metadata

    _only_user_errors(record_of_metadata, metadata, "fuzz.onnx")


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory):
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("coco")
    Image.fromarray(np.zeros((10, 12, 3), dtype=np.uint8)).save(folder / "a.jpg")
    return folder


coco_values = st.one_of(
    leaves, st.integers(0, 20), st.just("a.jpg"), st.just(1e9), st.just(-1e9),
    st.lists(st.one_of(st.integers(-5, 30), st.floats()), max_size=10).map(lambda points: [points]),
)  # fmt: skip
coco_records = st.dictionaries(
    st.sampled_from(["id", "image_id", "category_id", "file_name", "height", "width", "segmentation",
                     "area", "iscrowd", "name", "bbox"]),
    coco_values, max_size=9,
)  # fmt: skip
coco_files = st.one_of(
    structures,
    st.fixed_dictionaries(
        {"images": st.lists(coco_records, max_size=3), "annotations": st.lists(coco_records, max_size=4),
         "categories": st.lists(coco_records, max_size=2)}
    ),
)  # fmt: skip


@FUZZ
@given(coco_files)
def test_a_coco_file_is_read_or_refused_by_name(coco_folder, data):
    from dsc.data.coco import COCOInstances

    path = coco_folder / "instances.json"
    path.write_text(json.dumps(data, default=str, allow_nan=True))

    def read():
        dataset = COCOInstances(coco_folder, path)
        for index in range(len(dataset)):
            item = dataset[index]
            assert item["instances"].shape == (10, 12)

    try:
        read()
    except UserError as error:
        assert "instances.json" in str(error) or "a.jpg" in str(error) or "coco" in str(error).lower()
